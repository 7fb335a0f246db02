//! What the transport records into etcd's `etcd_network_*` families (labelled by the peer's
//! hexadecimal ID, as etcd's rafthttp labels them).

use std::time::Duration;

use rustcd_metrics::{HistogramVec, IntCounterVec, get};

fn hex(id: u64) -> String {
    format!("{id:x}")
}

pub(crate) fn sent(to: u64, bytes: usize) {
    get().network.peer_sent_bytes_total.with_label_values(&[&hex(to)]).inc_by(bytes as u64);
}

pub(crate) fn received(from: u64, bytes: usize) {
    get().network.peer_received_bytes_total.with_label_values(&[&hex(from)]).inc_by(bytes as u64);
}

pub(crate) fn send_failed(to: u64) {
    get().network.peer_sent_failures_total.with_label_values(&[&hex(to)]).inc();
}

/// A stream to `remote` came up (`true`) or went down.
pub(crate) fn peer_active(local: u64, remote: u64, up: bool) {
    let n = &get().network;
    let labels = [hex(local), hex(remote)];
    let labels = [labels[0].as_str(), labels[1].as_str()];
    if up {
        n.active_peers.with_label_values(&labels).inc();
    } else {
        n.active_peers.with_label_values(&labels).dec();
        n.disconnected_peers_total.with_label_values(&labels).inc();
    }
}

pub(crate) fn round_trip(to: u64, rtt: Duration) {
    let h = &get().network.peer_round_trip_time_seconds;
    h.with_label_values(&[&hex(to)]).observe(rustcd_metrics::secs(rtt));
}

pub(crate) fn snapshot_sent(to: u64, ok: bool, took: Duration) {
    let n = &get().network;
    snapshot_done(
        to,
        ok,
        took,
        &n.snapshot_send_success,
        &n.snapshot_send_failures,
        &n.snapshot_send_total_duration_seconds,
    );
}

pub(crate) fn snapshot_received(from: u64, ok: bool, took: Duration) {
    let n = &get().network;
    let (success, failures) = (&n.snapshot_receive_success, &n.snapshot_receive_failures);
    snapshot_done(from, ok, took, success, failures, &n.snapshot_receive_total_duration_seconds);
}

/// A snapshot transfer with `peer` ended: a success with its duration, or a failure.
fn snapshot_done(
    peer: u64,
    ok: bool,
    took: Duration,
    success: &IntCounterVec,
    failures: &IntCounterVec,
    duration: &HistogramVec,
) {
    let peer = hex(peer);
    if ok {
        success.with_label_values(&[&peer]).inc();
        duration.with_label_values(&[&peer]).observe(rustcd_metrics::secs(took));
    } else {
        failures.with_label_values(&[&peer]).inc();
    }
}
