//! etcdctl: ours against the real one (help, output on both servers, a parity session), its tools, and snapshots in etcd's format.
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod etcdctl_help;
mod etcdctl_ours;
mod etcdctl_parity;
mod etcdctl_tools;
mod snapshots;
