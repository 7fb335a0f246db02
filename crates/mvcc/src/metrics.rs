//! What the store records into etcd's `etcd_mvcc_*` and `etcd_disk_backend_*` families, as
//! etcd's `mvcc/metrics_txn.go` and backend count them.

use rustcd_metrics::get;

pub(crate) fn range() {
    let m = &get().mvcc;
    m.range_total.inc();
    m.debugging_range_total.inc();
}

pub(crate) fn put(size: usize) {
    let m = &get().mvcc;
    m.put_total.inc();
    m.debugging_put_total.inc();
    m.total_put_size_in_bytes.add(size as i64);
}

pub(crate) fn delete() {
    let m = &get().mvcc;
    m.delete_total.inc();
    m.debugging_delete_total.inc();
}

/// A txn is counted as one when it runs more than one operation (etcd's rule).
pub(crate) fn txn(ops: usize) {
    if ops > 1 {
        let m = &get().mvcc;
        m.txn_total.inc();
        m.debugging_txn_total.inc();
    }
}

pub(crate) fn commit(took: std::time::Duration) {
    get().disk.backend_commit_duration_seconds.observe(rustcd_metrics::secs(took));
}
