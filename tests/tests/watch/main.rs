//! Watches: one member's streams, and watchers across a cluster's leader changes.
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod cluster_watch;
mod watch;
