//! Leases, locks and elections: on one member, and kept across a cluster's leader changes.
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod cluster_leases;
mod leases_locks;
