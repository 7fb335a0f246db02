//! rustcd-schema: etcd's `storage/schema` and `storage/datadir` for rustcd, in one place. What
//! the backend's meta table holds under which key ([`meta`]), etcd's bucket and key names in
//! its bbolt files ([`etcd`]), the files of a data dir ([`datadir`]), member and cluster IDs as
//! etcd derives them ([`ids`]), a member in etcd's JSON ([`member`]) and the initial cluster a data dir is made from ([`cluster`],
//! with etcd's URLs, [`url`]).
//!
//! The server, the snapshot code and the offline tools all read these names from here, so none
//! of them needs another's internals. It owns names and layouts only: it must not open a
//! backend or reach the network, and depends on nothing of rustcd's but Go's text forms
//! (`rustcd-gocompat`).

pub mod cluster;
pub mod datadir;
pub mod etcd;
pub mod ids;
pub mod member;
pub mod meta;
pub mod url;
