//! Clusters: bootstrap (flags, DNS SRV and v2 discovery), membership changes, faults, a large snapshot catch-up, mixed clusters with the real etcd, and the user's seed walkthrough.
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod cluster_faults;
mod cluster_large_snapshot;
mod cluster_membership;
mod discovery_srv;
mod discovery_v2;
mod mixed_etcd;
mod seed_walkthrough;
mod start_flags;
