//! Failpoints (the `fail` crate) for the robustness tests, set by the `FAILPOINTS` environment
//! variable as `name=actions` pairs separated by `;`, in the fail crate's action syntax (e.g.
//! `raftAfterSave=20*off->panic`: the 21st time the point is reached, panic). Off unless set;
//! a member with any set says so at start. A panic aborts the member (see `main`), so `panic`
//! is a crash at that point. The names follow etcd's gofail points where there is one:
//!
//! - `raftBeforeSave`, `raftAfterSave`: around the fsynced write of new raft log entries;
//! - `raftBeforeApplySnap`, `raftAfterApplySnap`: a received snapshot is in the backend, around
//!   the raft log recording it; `backendBeforeRestore`: before the backend takes it;
//! - `snapshotBeforeSave`: before a snapshot is made for a peer that fell behind;
//! - `beforeCommit`, `afterCommit`: around the backend's durable commit;
//! - `compactBeforeCommit`, `compactAfterCommit`: around the compaction's write and its commit;
//! - `defragBeforeCompact`, `defragAfterCompact`: around the backend file's rewrite (defrag);
//!   `defragBeforeSwap`: the new file complete, about to take the old one's place;
//! - `beforeSnapshotExport`, `snapshotSendPiece`: a client's snapshot (Maintenance.Snapshot)
//!   before it is written, and after each piece sent;
//! - `restoreBeforeRename` (etcdutl): a restored member written, not yet moved in place;
//! - `ack-before-commit` (action `return`): a deliberate bug, a put answered as soon as it is
//!   proposed, before raft commits it. The checker must notice.
//!
//! raft-engine's own points (names with `::`, e.g. `log_fd::write::err`) may be set too.
//!
//! All of this exists only in builds with the `failpoints` feature (the test command's): a
//! release build has no failpoints, and refuses to start when `FAILPOINTS` is set.

/// Every failpoint of rustcd's; `FAILPOINTS` may name only these and raft-engine's.
#[cfg(feature = "failpoints")]
pub const NAMES: &[&str] = &[
    "raftBeforeSave",
    "raftAfterSave",
    "raftBeforeApplySnap",
    "raftAfterApplySnap",
    "backendBeforeRestore",
    "snapshotBeforeSave",
    "beforeCommit",
    "afterCommit",
    "compactBeforeCommit",
    "compactAfterCommit",
    "defragBeforeCompact",
    "defragAfterCompact",
    "defragBeforeSwap",
    "beforeSnapshotExport",
    "snapshotSendPiece",
    "restoreBeforeRename",
    "ack-before-commit",
];

/// Sets the failpoints `FAILPOINTS` names; an unknown name or a bad action is an error.
#[cfg(feature = "failpoints")]
pub fn setup() -> Result<(), String> {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return Ok(());
    };
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, actions) = part.split_once('=').ok_or_else(|| format!("failpoint {part:?} has no '=actions'"))?;
        if !NAMES.contains(&name) && !name.contains("::") {
            return Err(format!("unknown failpoint {name:?} (known: {})", NAMES.join(", ")));
        }
        fail::cfg(name, actions).map_err(|e| format!("failpoint {name}: {e}"))?;
    }
    tracing::warn!(failpoints = %spec, "running with failpoints set (FAILPOINTS)");
    Ok(())
}

/// Without the `failpoints` feature: `FAILPOINTS` set is an error, never silently ignored.
#[cfg(not(feature = "failpoints"))]
pub fn setup() -> Result<(), String> {
    match std::env::var_os("FAILPOINTS") {
        None => Ok(()),
        Some(_) => Err("FAILPOINTS is set, but this build has no failpoints (build with --features failpoints)".into()),
    }
}

/// True when the failpoint is set to `return`.
#[cfg(feature = "failpoints")]
pub fn returns(name: &str) -> bool {
    fail::eval(name, |_| ()).is_some()
}
