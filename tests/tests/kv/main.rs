//! The KV API on one member and small clusters: puts, ranges and range streams, request limits, auto-compaction, alarms (NOSPACE, CORRUPT).
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod alarms;
mod auto_compaction;
mod limits;
mod range_stream;
mod server_basics;
