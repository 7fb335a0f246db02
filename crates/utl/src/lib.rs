//! rustcd-utl: etcd's offline tools (`etcdutl`, etcd 3.5's commands and output): snapshot status
//! and restore, defrag and backup of a data dir no member is using, and version.
//!
//! The work is rustcd-backup's ([`rustcd_backup`], on [`rustcd_mvcc::KvStore`]); this
//! crate is the command line, the output formats and the progress bar, shared with etcdctl's
//! `snapshot status` and `snapshot restore` (which etcd 3.5's etcdctl also hands to etcdutl's
//! code). It must not reach a running member.

pub mod datadir;
pub mod print;
pub mod progress;
pub mod snapshot;

/// Logs as etcd's tools do (zap's JSON lines on stderr), for the commands that log.
pub fn log_to_stderr() {
    let _ = rustcd_process::logging::init("info", &["stderr".to_string()], None);
}

/// A failed command: the exit code (etcd's `cobrautl` codes) and the text after `Error: `.
#[derive(Debug)]
pub struct UtlError {
    pub code: u8,
    pub msg: String,
}

impl UtlError {
    /// `ExitError`.
    pub fn error(msg: impl std::fmt::Display) -> Self {
        UtlError { code: 1, msg: msg.to_string() }
    }
    /// `ExitBadFeature`.
    pub fn bad_feature(msg: impl std::fmt::Display) -> Self {
        UtlError { code: 4, msg: msg.to_string() }
    }
    /// `ExitBadArgs`.
    pub fn bad_args(msg: impl std::fmt::Display) -> Self {
        UtlError { code: 128, msg: msg.to_string() }
    }
}
