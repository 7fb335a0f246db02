//! etcd's metrics: the families rustcd's `/metrics` exports against those of the real etcd 3.4
//! on this machine (names, types, help texts, buckets), and etcd's own Grafana dashboard and
//! alert queries (etcd 3.5's `contrib/mixin`) run by a real Prometheus (Debian's package,
//! installed by `scripts/test.sh`) scraping a 3-member rustcd cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rustcd_testkit::{Cluster, HttpStream, Server, etcdctl, etcdctl_watch, wait_for};

/// etcd 3.4's families rustcd leaves out, and why.
const LEFT_OUT: &[(&str, &str)] = &[
    ("etcd_debugging_disk_backend_commit_rebalance_duration_seconds", "a bbolt commit phase; redb has none"),
    ("etcd_debugging_disk_backend_commit_spill_duration_seconds", "a bbolt commit phase; redb has none"),
    ("etcd_debugging_disk_backend_commit_write_duration_seconds", "a bbolt commit phase (the whole commit is timed)"),
    (
        "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
        "etcd compacts in batches with pauses between; rustcd's compaction is one pass in one write",
    ),
    ("etcd_debugging_mvcc_pending_events_total", "a slow watcher catches up from the backend, not a queue"),
    ("etcd_debugging_snap_save_marshalling_duration_seconds", "v2 .snap files: rustcd writes none"),
    ("etcd_debugging_snap_save_total_duration_seconds", "v2 .snap files: rustcd writes none"),
    ("etcd_snap_fsync_duration_seconds", "v2 .snap files: rustcd writes none"),
    ("etcd_snap_db_fsync_duration_seconds", "a received snapshot goes into the backend, not a .snap.db file"),
    ("etcd_debugging_store_expires_total", "the v2 store: rustcd serves v3 only"),
    ("etcd_debugging_store_reads_total", "the v2 store: rustcd serves v3 only"),
    ("etcd_debugging_store_watch_requests_total", "the v2 store: rustcd serves v3 only"),
    ("etcd_debugging_store_watchers", "the v2 store: rustcd serves v3 only"),
    ("etcd_debugging_store_writes_total", "the v2 store: rustcd serves v3 only"),
    ("etcd_grpc_proxy_cache_hits_total", "the grpc-proxy's, on `etcd grpc-proxy start` only"),
    ("etcd_grpc_proxy_cache_keys_total", "the grpc-proxy's, on `etcd grpc-proxy start` only"),
    ("etcd_grpc_proxy_cache_misses_total", "the grpc-proxy's, on `etcd grpc-proxy start` only"),
    ("etcd_grpc_proxy_events_coalescing_total", "the grpc-proxy's, on `etcd grpc-proxy start` only"),
    ("etcd_grpc_proxy_watchers_coalescing_total", "the grpc-proxy's, on `etcd grpc-proxy start` only"),
    ("etcd_server_go_version", "no Go runtime"),
];

/// Families rustcd exports that etcd 3.4 does not, and why.
const ADDED: &[(&str, &str)] = &[
    ("etcd_debugging_mvcc_db_compaction_last", "etcd 3.5's"),
    ("process_threads", "the Rust Prometheus client's process collector"),
];

/// `# TYPE` and `# HELP` of each family, and the bucket bounds of each histogram.
#[derive(Default)]
struct Families {
    types: BTreeMap<String, String>,
    help: BTreeMap<String, String>,
    buckets: BTreeMap<String, BTreeSet<String>>,
}

fn scrape(addr: &str) -> String {
    HttpStream::open_at(addr, "GET", "/metrics", "").lines(usize::MAX, Duration::from_secs(10)).join("\n")
}

fn families(text: &str) -> Families {
    let mut f = Families::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            f.types.insert(name.into(), kind.into());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            f.help.insert(name.into(), help.into());
        } else if let Some((name, labels)) = line.split_once("_bucket{")
            && let Some(le) = labels.split("le=\"").nth(1).and_then(|l| l.split('"').next())
        {
            f.buckets.entry(name.into()).or_default().insert(le.into());
        }
    }
    f.types.retain(|n, _| !n.starts_with("go_"));
    f
}

/// A little of everything: writes, reads, a delete, a lease kept alive, a watch, a compaction.
fn load(c: &Cluster) {
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    let eps = [ep.as_str()];
    let ok = |args: &[&str]| {
        let out = etcdctl(&eps, args);
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for i in 0..20 {
        ok(&["put", &format!("k{i}"), "v"]);
    }
    ok(&["get", "k", "--prefix"]);
    ok(&["del", "k19"]);
    let lease = ok(&["lease", "grant", "60"]);
    let id = lease.split_whitespace().nth(1).unwrap_or("0").to_string();
    ok(&["lease", "keep-alive", "--once", &id]);
    ok(&["put", "leased", "v", "--lease", &id]);
    let watched = etcdctl_watch(&ep, &["watch", "k0", "--rev", "1"], 3, Duration::from_secs(10));
    assert!(watched.stdout.contains("k0"), "{:?}", watched.stdout);
    ok(&["compaction", "5"]);
}

#[test]
fn metric_families_match_the_real_etcds_but_the_documented_ones() {
    let mut seen = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let c = Cluster::start_with(server, 3, &["--metrics=extensive"]);
        load(&c);
        // Peers' round trips are timed once members talk (etcd's prober every few seconds).
        let text = wait_for("peer round trips timed", Duration::from_secs(30), || {
            let text = scrape(&c.members[0].endpoint());
            text.contains("etcd_network_peer_round_trip_time_seconds_bucket").then_some(text)
        });
        seen.push(families(&text));
    }
    let (ours, theirs) = (&seen[0], &seen[1]);
    let names = |f: &Families| f.types.keys().cloned().collect::<BTreeSet<_>>();
    let missing: Vec<_> = names(theirs).difference(&names(ours)).cloned().collect();
    let added: Vec<_> = names(ours).difference(&names(theirs)).cloned().collect();
    let left_out: Vec<_> = LEFT_OUT.iter().map(|(n, _)| n.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
    let extra: Vec<_> = ADDED.iter().map(|(n, _)| n.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(missing, left_out, "etcd's families rustcd does not export (left out: {LEFT_OUT:?})");
    assert_eq!(added, extra, "families only rustcd exports");
    // What both export is the same kind of metric, described alike, with the same buckets.
    for (name, kind) in &ours.types {
        let Some(their_kind) = theirs.types.get(name) else { continue };
        assert_eq!(kind, their_kind, "type of {name}");
        assert_eq!(ours.help.get(name), theirs.help.get(name), "help of {name}");
        if let (Some(a), Some(b)) = (ours.buckets.get(name), theirs.buckets.get(name)) {
            // Compared as numbers: Go writes 1048576 as 1.048576e+06, the Rust client does not.
            let bounds = |s: &BTreeSet<String>| {
                let mut v: Vec<f64> = s.iter().map(|b| b.parse().unwrap_or(f64::INFINITY)).collect();
                v.sort_by(f64::total_cmp);
                v
            };
            assert_eq!(bounds(a), bounds(b), "buckets of {name}");
        }
    }
    assert!(
        ours.buckets.contains_key("etcd_network_peer_round_trip_time_seconds"),
        "a 3-member cluster times its peers"
    );
}

/// etcd's Grafana dashboard (etcd 3.5's `contrib/mixin`), each panel's query with `$cluster`
/// as the scrape job.
const DASHBOARD: &[&str] = &[
    r#"sum(etcd_server_has_leader{job="rustcd"})"#,
    r#"sum(rate(grpc_server_started_total{job="rustcd",grpc_type="unary"}[5m]))"#,
    r#"sum(rate(grpc_server_handled_total{job="rustcd",grpc_type="unary",grpc_code!="OK"}[5m]))"#,
    r#"sum(grpc_server_started_total{job="rustcd",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}) - sum(grpc_server_handled_total{job="rustcd",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"})"#,
    r#"sum(grpc_server_started_total{job="rustcd",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"}) - sum(grpc_server_handled_total{job="rustcd",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"})"#,
    r#"etcd_mvcc_db_total_size_in_bytes{job="rustcd"}"#,
    r#"histogram_quantile(0.99, sum(rate(etcd_disk_wal_fsync_duration_seconds_bucket{job="rustcd"}[5m])) by (instance, le))"#,
    r#"histogram_quantile(0.99, sum(rate(etcd_disk_backend_commit_duration_seconds_bucket{job="rustcd"}[5m])) by (instance, le))"#,
    r#"process_resident_memory_bytes{job="rustcd"}"#,
    r#"rate(etcd_network_client_grpc_received_bytes_total{job="rustcd"}[5m])"#,
    r#"rate(etcd_network_client_grpc_sent_bytes_total{job="rustcd"}[5m])"#,
    r#"sum(rate(etcd_network_peer_received_bytes_total{job="rustcd"}[5m])) by (instance)"#,
    r#"sum(rate(etcd_network_peer_sent_bytes_total{job="rustcd"}[5m])) by (instance)"#,
    r#"sum(rate(etcd_server_proposals_failed_total{job="rustcd"}[5m]))"#,
    r#"sum(etcd_server_proposals_pending{job="rustcd"})"#,
    r#"sum(rate(etcd_server_proposals_committed_total{job="rustcd"}[5m]))"#,
    r#"sum(rate(etcd_server_proposals_applied_total{job="rustcd"}[5m]))"#,
    r#"changes(etcd_server_leader_changes_seen_total{job="rustcd"}[1d])"#,
];

/// The expressions of etcd's alerts (the same mixin), their thresholds left off: each must
/// have data to compare. (`etcdMembersDown` also reads `etcd_network_peer_sent_failures_total`,
/// which, as etcd's, has a series once a send failed.)
const ALERTS: &[&str] = &[
    r#"etcd_server_has_leader{job="rustcd"} == 1"#,
    r#"increase((max without (instance) (etcd_server_leader_changes_seen_total{job="rustcd"}) or 0*absent(etcd_server_leader_changes_seen_total{job="rustcd"}))[15m:1m])"#,
    r#"sum(rate(grpc_server_handled_total{job="rustcd"}[5m])) without (grpc_type, grpc_code)"#,
    r#"histogram_quantile(0.99, sum(rate(grpc_server_handling_seconds_bucket{job="rustcd", grpc_type="unary"}[5m])) without(grpc_type))"#,
    r#"histogram_quantile(0.99, rate(etcd_network_peer_round_trip_time_seconds_bucket{job="rustcd"}[5m]))"#,
    r#"rate(etcd_server_proposals_failed_total{job="rustcd"}[15m])"#,
    r#"histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket{job="rustcd"}[5m]))"#,
    r#"histogram_quantile(0.99, rate(etcd_disk_backend_commit_duration_seconds_bucket{job="rustcd"}[5m]))"#,
    r#"(etcd_mvcc_db_total_size_in_bytes{job="rustcd"}/etcd_server_quota_backend_bytes{job="rustcd"})*100"#,
    // etcdExcessiveDatabaseGrowth, its 4-hour window (in 1-minute steps) cut to what a test sees.
    r#"increase(((etcd_mvcc_db_total_size_in_bytes{job="rustcd"}/etcd_server_quota_backend_bytes{job="rustcd"})*100)[1m:1s])"#,
];

/// A Prometheus server (Debian's `prometheus`) scraping `targets` every second; stopped on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = rustcd_testkit::free_port();
        let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: rustcd\n    static_configs:\n      - targets: [{list}]\n"
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("write config");
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
            .spawn()
            .expect("start prometheus (scripts/test.sh installs Debian's package)");
        let p = Prometheus { child, port, _dir: dir };
        wait_for("prometheus ready", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| rustcd_testkit::http_get(port, "/-/ready"))
                .filter(|r| r.starts_with("HTTP/1.1 200"))
        });
        p
    }

    /// The query's result vector.
    fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let encoded: String = q
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let text = HttpStream::open(self.port, "GET", &format!("/api/v1/query?query={encoded}"), "")
            .lines(usize::MAX, Duration::from_secs(10))
            .join("\n");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v["status"], "success", "{q}: {text}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn etcds_grafana_dashboard_and_alert_queries_return_data() {
    let c = Cluster::start_with(Server::Rustcd, 3, &["--metrics=extensive"]);
    let prom = Prometheus::start(&c.endpoints());
    load(&c);
    // Every member scraped more than once, so that rates have two samples.
    wait_for("three members scraped twice", Duration::from_secs(60), || {
        let scrapes = prom.query(r#"count_over_time(up{job="rustcd"}[5m]) >= 2"#);
        (scrapes.len() == 3).then_some(())
    });
    let started = Instant::now();
    for q in DASHBOARD.iter().chain(ALERTS) {
        let result = wait_for(&format!("data for {q}"), Duration::from_secs(30), || {
            let r = prom.query(q);
            (!r.is_empty()).then_some(r)
        });
        eprintln!("{q}: {} series", result.len());
    }
    let leaders = prom.query(DASHBOARD[0]);
    assert_eq!(leaders[0]["value"][1], "3", "every member has a leader: {leaders:?}");
    let peer_bytes = prom.query(DASHBOARD[12]);
    assert_eq!(peer_bytes.len(), 3, "{peer_bytes:?}");
    eprintln!("all {} queries answered in {:?}", DASHBOARD.len() + ALERTS.len(), started.elapsed());
}
