//! Robustness: histories under faults checked for linearizability and watch guarantees, crashes at failpoints, durability, hostile requests and peers, the verify tool.
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod crash_points;
mod durability;
mod fuzz_peer;
mod fuzz_requests;
mod robustness;
mod verify;
