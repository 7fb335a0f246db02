//! The families, as etcd 3.5 defines them (`server/*/metrics.go`): same names, help texts,
//! labels and buckets. A family etcd 3.4 also exports under an older `etcd_debugging_` name
//! that its dashboards read is exported under both.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    exponential_buckets,
};

/// Every family, and the registry that exports them.
pub struct Metrics {
    pub disk: Disk,
    pub mvcc: Mvcc,
    pub server: Server,
    pub network: Network,
    pub snap: Snap,
    pub lease: Lease,
    pub grpc: Grpc,
    pub(crate) registry: Registry,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let r = Registry::new();
        must(r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())));
        Metrics {
            disk: Disk::new(&r),
            mvcc: Mvcc::new(&r),
            server: Server::new(&r),
            network: Network::new(&r),
            snap: Snap::new(&r),
            lease: Lease::new(&r),
            grpc: Grpc::new(&r),
            registry: r,
        }
    }
}

/// The WAL (rustcd's raft log) and the backend's disk work.
pub struct Disk {
    pub wal_fsync_duration_seconds: Histogram,
    pub wal_write_bytes_total: IntGauge,
    pub backend_commit_duration_seconds: Histogram,
    pub backend_defrag_duration_seconds: Histogram,
    pub backend_snapshot_duration_seconds: Histogram,
    pub defrag_inflight: IntGauge,
}

impl Disk {
    fn new(r: &Registry) -> Disk {
        Disk {
            wal_fsync_duration_seconds: hist(
                r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                exp(0.001, 14),
            ),
            wal_write_bytes_total: gauge(r, "etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL."),
            backend_commit_duration_seconds: hist(
                r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                exp(0.001, 14),
            ),
            backend_defrag_duration_seconds: hist(
                r,
                "etcd_disk_backend_defrag_duration_seconds",
                "The latency distribution of backend defragmentation.",
                exp(0.1, 13),
            ),
            backend_snapshot_duration_seconds: hist(
                r,
                "etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                exp(0.01, 17),
            ),
            defrag_inflight: gauge(
                r,
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            ),
        }
    }
}

/// The multi-version store.
pub struct Mvcc {
    pub range_total: IntCounter,
    pub put_total: IntCounter,
    pub delete_total: IntCounter,
    pub txn_total: IntCounter,
    pub debugging_range_total: IntCounter,
    pub debugging_put_total: IntCounter,
    pub debugging_delete_total: IntCounter,
    pub debugging_txn_total: IntCounter,
    pub db_total_size_in_bytes: IntGauge,
    pub debugging_db_total_size_in_bytes: IntGauge,
    pub db_total_size_in_use_in_bytes: IntGauge,
    pub db_open_read_transactions: IntGauge,
    pub hash_duration_seconds: Histogram,
    pub hash_rev_duration_seconds: Histogram,
    pub keys_total: IntGauge,
    pub watch_stream_total: IntGauge,
    pub watcher_total: IntGauge,
    pub slow_watcher_total: IntGauge,
    pub events_total: IntCounter,
    pub db_compaction_total_duration_milliseconds: Histogram,
    pub index_compaction_pause_duration_milliseconds: Histogram,
    pub db_compaction_last: IntGauge,
    pub db_compaction_keys_total: IntCounter,
    pub current_revision: IntGauge,
    pub compact_revision: IntGauge,
    pub total_put_size_in_bytes: IntGauge,
}

impl Mvcc {
    fn new(r: &Registry) -> Mvcc {
        let ranges = "Total number of ranges seen by this member.";
        let puts = "Total number of puts seen by this member.";
        let deletes = "Total number of deletes seen by this member.";
        let txns = "Total number of txns seen by this member.";
        let size = "Total size of the underlying database physically allocated in bytes.";
        Mvcc {
            range_total: counter(r, "etcd_mvcc_range_total", ranges),
            put_total: counter(r, "etcd_mvcc_put_total", puts),
            delete_total: counter(r, "etcd_mvcc_delete_total", deletes),
            txn_total: counter(r, "etcd_mvcc_txn_total", txns),
            debugging_range_total: counter(r, "etcd_debugging_mvcc_range_total", ranges),
            debugging_put_total: counter(r, "etcd_debugging_mvcc_put_total", puts),
            debugging_delete_total: counter(r, "etcd_debugging_mvcc_delete_total", deletes),
            debugging_txn_total: counter(r, "etcd_debugging_mvcc_txn_total", txns),
            db_total_size_in_bytes: gauge(r, "etcd_mvcc_db_total_size_in_bytes", size),
            debugging_db_total_size_in_bytes: gauge(r, "etcd_debugging_mvcc_db_total_size_in_bytes", size),
            db_total_size_in_use_in_bytes: gauge(
                r,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            db_open_read_transactions: gauge(
                r,
                "etcd_mvcc_db_open_read_transactions",
                "The number of currently open read transactions",
            ),
            hash_duration_seconds: hist(
                r,
                "etcd_mvcc_hash_duration_seconds",
                "The latency distribution of storage hash operation.",
                exp(0.01, 15),
            ),
            hash_rev_duration_seconds: hist(
                r,
                "etcd_mvcc_hash_rev_duration_seconds",
                "The latency distribution of storage hash by revision operation.",
                exp(0.01, 15),
            ),
            keys_total: gauge(r, "etcd_debugging_mvcc_keys_total", "Total number of keys."),
            watch_stream_total: gauge(r, "etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams."),
            watcher_total: gauge(r, "etcd_debugging_mvcc_watcher_total", "Total number of watchers."),
            slow_watcher_total: gauge(
                r,
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            ),
            events_total: counter(r, "etcd_debugging_mvcc_events_total", "Total number of events sent by this member."),
            db_compaction_total_duration_milliseconds: hist(
                r,
                "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "Bucketed histogram of db compaction total duration.",
                exp(100.0, 14),
            ),
            index_compaction_pause_duration_milliseconds: hist(
                r,
                "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
                "Bucketed histogram of index compaction pause duration.",
                exp(0.5, 14),
            ),
            db_compaction_last: gauge(
                r,
                "etcd_debugging_mvcc_db_compaction_last",
                "The unix time of the last db compaction. Resets to 0 on start.",
            ),
            db_compaction_keys_total: counter(
                r,
                "etcd_debugging_mvcc_db_compaction_keys_total",
                "Total number of db keys compacted.",
            ),
            current_revision: gauge(r, "etcd_debugging_mvcc_current_revision", "The current revision of store."),
            compact_revision: gauge(
                r,
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            ),
            total_put_size_in_bytes: gauge(
                r,
                "etcd_debugging_mvcc_total_put_size_in_bytes",
                "The total size of put kv pairs seen by this member.",
            ),
        }
    }
}

/// The member: leadership, proposals, versions, health, file descriptors.
pub struct Server {
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub is_learner: IntGauge,
    pub leader_changes_seen_total: IntCounter,
    pub heartbeat_send_failures_total: IntCounter,
    pub learner_promote_successes: IntCounter,
    pub proposals_committed_total: IntGauge,
    pub proposals_applied_total: IntGauge,
    pub proposals_pending: IntGauge,
    pub proposals_failed_total: IntCounter,
    pub read_indexes_failed_total: IntCounter,
    pub slow_read_indexes_total: IntCounter,
    pub slow_apply_total: IntCounter,
    pub lease_expired_total: IntCounter,
    pub quota_backend_bytes: IntGauge,
    pub snapshot_apply_in_progress_total: IntGauge,
    pub version: IntGaugeVec,
    pub id: IntGaugeVec,
    pub cluster_version: IntGaugeVec,
    pub auth_revision: IntGauge,
    pub client_requests_total: IntCounterVec,
    pub health_success: IntCounter,
    pub health_failures: IntCounter,
    pub fd_used: IntGauge,
    pub fd_limit: IntGauge,
    pub virtual_memory_max_bytes: IntGauge,
    pub scrapes_in_flight: IntGauge,
    pub scrapes_total: IntCounterVec,
}

impl Server {
    fn new(r: &Registry) -> Server {
        Server {
            has_leader: gauge(r, "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
            is_leader: gauge(
                r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            is_learner: gauge(
                r,
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            leader_changes_seen_total: counter(
                r,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            heartbeat_send_failures_total: counter(
                r,
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            ),
            learner_promote_successes: counter(
                r,
                "etcd_server_learner_promote_successes",
                "The total number of successful learner promotions while this member is leader.",
            ),
            proposals_committed_total: gauge(
                r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied_total: gauge(
                r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_pending: gauge(
                r,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed_total: counter(
                r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            read_indexes_failed_total: counter(
                r,
                "etcd_server_read_indexes_failed_total",
                "The total number of failed read indexes seen.",
            ),
            slow_read_indexes_total: counter(
                r,
                "etcd_server_slow_read_indexes_total",
                "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
            ),
            slow_apply_total: counter(
                r,
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            lease_expired_total: counter(
                r,
                "etcd_debugging_server_lease_expired_total",
                "The total number of expired leases.",
            ),
            quota_backend_bytes: gauge(
                r,
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            snapshot_apply_in_progress_total: gauge(
                r,
                "etcd_server_snapshot_apply_in_progress_total",
                "1 if the server is applying the incoming snapshot. 0 if none.",
            ),
            version: gauge_vec(
                r,
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
                &["server_version"],
            ),
            id: gauge_vec(
                r,
                "etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                &["server_id"],
            ),
            cluster_version: gauge_vec(
                r,
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
                &["cluster_version"],
            ),
            auth_revision: gauge(r, "etcd_debugging_auth_revision", "The current revision of auth store."),
            client_requests_total: counter_vec(
                r,
                "etcd_server_client_requests_total",
                "The total number of client requests per client version.",
                &["type", "client_api_version"],
            ),
            health_success: counter(r, "etcd_server_health_success", "The total number of successful health checks"),
            health_failures: counter(r, "etcd_server_health_failures", "The total number of failed health checks"),
            fd_used: gauge(r, "os_fd_used", "The number of used file descriptors."),
            fd_limit: gauge(r, "os_fd_limit", "The file descriptor limit."),
            virtual_memory_max_bytes: gauge(
                r,
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
            ),
            scrapes_in_flight: gauge(
                r,
                "promhttp_metric_handler_requests_in_flight",
                "Current number of scrapes being served.",
            ),
            scrapes_total: counter_vec(
                r,
                "promhttp_metric_handler_requests_total",
                "Total number of scrapes by HTTP status code.",
                &["code"],
            ),
        }
    }
}

/// Peers and clients on the wire.
pub struct Network {
    pub active_peers: IntGaugeVec,
    pub disconnected_peers_total: IntCounterVec,
    pub peer_sent_bytes_total: IntCounterVec,
    pub peer_received_bytes_total: IntCounterVec,
    pub peer_sent_failures_total: IntCounterVec,
    pub peer_round_trip_time_seconds: HistogramVec,
    pub snapshot_send_success: IntCounterVec,
    pub snapshot_send_failures: IntCounterVec,
    pub snapshot_send_total_duration_seconds: HistogramVec,
    pub snapshot_receive_success: IntCounterVec,
    pub snapshot_receive_failures: IntCounterVec,
    pub snapshot_receive_total_duration_seconds: HistogramVec,
    pub client_grpc_sent_bytes_total: IntCounter,
    pub client_grpc_received_bytes_total: IntCounter,
}

impl Network {
    fn new(r: &Registry) -> Network {
        Network {
            active_peers: gauge_vec(
                r,
                "etcd_network_active_peers",
                "The current number of active peer connections.",
                &["Local", "Remote"],
            ),
            disconnected_peers_total: counter_vec(
                r,
                "etcd_network_disconnected_peers_total",
                "The total number of disconnected peers.",
                &["Local", "Remote"],
            ),
            peer_sent_bytes_total: counter_vec(
                r,
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                &["To"],
            ),
            peer_received_bytes_total: counter_vec(
                r,
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                &["From"],
            ),
            peer_sent_failures_total: counter_vec(
                r,
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                &["To"],
            ),
            peer_round_trip_time_seconds: hist_vec(
                r,
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
                exp(0.0001, 16),
                &["To"],
            ),
            snapshot_send_success: counter_vec(
                r,
                "etcd_network_snapshot_send_success",
                "Total number of successful snapshot sends",
                &["To"],
            ),
            snapshot_send_failures: counter_vec(
                r,
                "etcd_network_snapshot_send_failures",
                "Total number of snapshot send failures",
                &["To"],
            ),
            snapshot_send_total_duration_seconds: hist_vec(
                r,
                "etcd_network_snapshot_send_total_duration_seconds",
                "Total latency distributions of v3 snapshot sends",
                exp(0.1, 10),
                &["To"],
            ),
            snapshot_receive_success: counter_vec(
                r,
                "etcd_network_snapshot_receive_success",
                "Total number of successful snapshot receives",
                &["From"],
            ),
            snapshot_receive_failures: counter_vec(
                r,
                "etcd_network_snapshot_receive_failures",
                "Total number of snapshot receive failures",
                &["From"],
            ),
            snapshot_receive_total_duration_seconds: hist_vec(
                r,
                "etcd_network_snapshot_receive_total_duration_seconds",
                "Total latency distributions of v3 snapshot receives",
                exp(0.1, 10),
                &["From"],
            ),
            client_grpc_sent_bytes_total: counter(
                r,
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            client_grpc_received_bytes_total: counter(
                r,
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
        }
    }
}

/// Snapshots of the backend written to disk (`etcdctl snapshot save` streams, raft snapshots).
pub struct Snap {
    pub db_save_total_duration_seconds: Histogram,
}

impl Snap {
    fn new(r: &Registry) -> Snap {
        Snap {
            db_save_total_duration_seconds: hist(
                r,
                "etcd_snap_db_save_total_duration_seconds",
                "The total latency distributions of v3 snapshot save",
                exp(0.1, 10),
            ),
        }
    }
}

/// The lessor.
pub struct Lease {
    pub granted_total: IntCounter,
    pub revoked_total: IntCounter,
    pub renewed_total: IntCounter,
    pub ttl_total: Histogram,
}

impl Lease {
    fn new(r: &Registry) -> Lease {
        Lease {
            granted_total: counter(r, "etcd_debugging_lease_granted_total", "The total number of granted leases."),
            revoked_total: counter(r, "etcd_debugging_lease_revoked_total", "The total number of revoked leases."),
            renewed_total: counter(
                r,
                "etcd_debugging_lease_renewed_total",
                "The number of renewed leases seen by the leader.",
            ),
            ttl_total: hist(r, "etcd_debugging_lease_ttl_total", "Bucketed histogram of lease TTLs.", exp(1.0, 24)),
        }
    }
}

/// go-grpc-prometheus' server families, labelled by type, service and method (and code).
pub struct Grpc {
    pub started_total: IntCounterVec,
    pub handled_total: IntCounterVec,
    pub msg_received_total: IntCounterVec,
    pub msg_sent_total: IntCounterVec,
    pub handling_seconds: HistogramVec,
}

const GRPC_LABELS: &[&str] = &["grpc_type", "grpc_service", "grpc_method"];

impl Grpc {
    fn new(r: &Registry) -> Grpc {
        Grpc {
            started_total: counter_vec(
                r,
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                GRPC_LABELS,
            ),
            handled_total: counter_vec(
                r,
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            ),
            msg_received_total: counter_vec(
                r,
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
                GRPC_LABELS,
            ),
            msg_sent_total: counter_vec(
                r,
                "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.",
                GRPC_LABELS,
            ),
            handling_seconds: hist_vec(
                r,
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                prometheus::DEFAULT_BUCKETS.to_vec(),
                GRPC_LABELS,
            ),
        }
    }
}

/// Go's `prometheus.ExponentialBuckets(start, 2, count)`.
fn exp(start: f64, count: usize) -> Vec<f64> {
    exponential_buckets(start, 2.0, count).unwrap_or_default()
}

/// A definition is a constant of this file: it fails only on a typo (a bad name, a family
/// registered twice), which the unit test below catches before any release.
fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("metric definition: {e}"),
    }
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = must(IntCounter::new(name, help));
    must(r.register(Box::new(c.clone())));
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = must(IntGauge::new(name, help));
    must(r.register(Box::new(g.clone())));
    g
}

fn hist(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = must(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)));
    must(r.register(Box::new(h.clone())));
    h
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = must(IntCounterVec::new(Opts::new(name, help), labels));
    must(r.register(Box::new(c.clone())));
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
    must(r.register(Box::new(g.clone())));
    g
}

fn hist_vec(r: &Registry, name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]) -> HistogramVec {
    let h = must(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels));
    must(r.register(Box::new(h.clone())));
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_family_is_defined_and_exported_with_etcds_buckets() {
        let m = super::Metrics::new();
        m.disk.wal_fsync_duration_seconds.observe(0.003);
        let text = {
            use prometheus::Encoder as _;
            let mut out = Vec::new();
            prometheus::TextEncoder::new().encode(&m.registry.gather(), &mut out).expect("encode");
            String::from_utf8(out).expect("utf8")
        };
        // Go's ExponentialBuckets(0.001, 2, 14): 0.001 .. 8.192.
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 1"), "{text}");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 1"), "{text}");
        assert!(text.contains("# TYPE etcd_server_proposals_committed_total gauge"));
        assert!(text.contains("# TYPE etcd_server_health_failures counter"));
    }
}
