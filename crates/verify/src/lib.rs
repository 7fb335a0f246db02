//! rustcd-verify: records and judges histories of etcd operations. Owns the history model
//! ([`linearizability::Op`], [`watch_check::Seen`]), recording one from a live cluster
//! ([`record`]: clients and resuming watchers over the etcd v3 gRPC API), the checks
//! (linearizable per key, watch guarantees, lost writes), the smallest failing sub-history of a
//! key ([`minimize`]) and the page a person reads ([`timeline`]).
//!
//! It must not start, stop or signal servers, nor write files: whoever runs the check
//! (`rustcd-bench verify`, the robustness tests) owns the cluster, its faults and the reports.

pub mod linearizability;
pub mod minimize;
pub mod record;
pub mod timeline;
pub mod watch_check;
