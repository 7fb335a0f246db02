//! rustcd-mvcc: the revisioned key space (etcd's `mvcc` package).
//!
//! Owns the key index ([`key_index::TreeIndex`]), the redb backend file, write transactions
//! ([`WriteTxn`]) that apply Put/DeleteRange/Txn/Compact exactly as etcd does, reads
//! ([`KvStore::range`]), the change history that watchers catch up from ([`KvStore::history`])
//! and the watcher hub ([`watch::WatchHub`]). It knows nothing of raft, the network or leases
//! beyond asking whether a lease id exists. Start with [`KvStore`].

mod bulk;
pub mod crc32c;
mod defrag;
mod error;
pub mod key_index;
pub mod key_range;
mod metrics;
mod range;
mod range_plan;
mod read_txn;
pub mod revision;
mod size;
mod snapshot;
mod store;
mod txn;
pub mod watch;

pub use bulk::{Loader, RowView};
pub use error::{Error, Result};
pub use key_range::KeyRange;
pub use range::has_revision_filters;
pub use range_plan::{RangePlan, plannable};
pub use read_txn::is_read_only;
pub use revision::Revision;
pub use store::{Committed, KeyValueHash, KvStore};
pub use txn::WriteTxn;

#[cfg(test)]
mod model_tests;
