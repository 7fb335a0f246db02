//! etcd's metrics: every family rustcd exports on `/metrics`, with etcd 3.5's names, help
//! texts, types, labels and buckets, grouped as etcd's packages define them (`disk` for the WAL
//! and backend, `mvcc`, `server`, `network`, `snap`, `lease`, `grpc`), and the registry that
//! exports them in Prometheus' text format.
//!
//! This crate owns the definitions and the registry only: the crates that do the work record
//! into it (the raft log its fsyncs, the store its commits, the peer transport its bytes), and
//! the server sets the gauges it knows at scrape time. It must not read state of its own.
//!
//! Read first: [`Metrics`] (one struct per family group, each field a family), [`get`] and
//! [`encode`]. `--metrics extensive` turns on [`Grpc::handling_seconds`], as etcd does.

mod families;

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub use families::{Disk, Grpc, Lease, Metrics, Mvcc, Network, Server, Snap};
pub use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Whether `--metrics extensive` asked for the gRPC latency histograms.
static EXTENSIVE: AtomicBool = AtomicBool::new(false);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// `--metrics extensive`: also export `grpc_server_handling_seconds`.
pub fn set_extensive(on: bool) {
    EXTENSIVE.store(on, Ordering::Relaxed);
}

/// Whether the gRPC latency histograms are exported (and so worth observing).
pub fn extensive() -> bool {
    EXTENSIVE.load(Ordering::Relaxed)
}

/// Every family in Prometheus' text format (version 0.0.4, as Go's client writes it).
pub fn encode() -> String {
    use prometheus::Encoder as _;
    let mut families = METRICS.registry.gather();
    if !extensive() {
        families.retain(|f| f.get_name() != "grpc_server_handling_seconds");
    }
    let mut out = Vec::new();
    // Encoding into memory fails only on a family without a name, which none is.
    if prometheus::TextEncoder::new().encode(&families, &mut out).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Seconds of a duration, as Go's `time.Since(...).Seconds()` observes them.
pub fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// Milliseconds of a duration, for etcd's `_milliseconds` histograms.
pub fn millis(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
