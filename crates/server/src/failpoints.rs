//! Deliberate bugs for the robustness tests, switched on by the `RUSTCD_FAILPOINTS` environment
//! variable (comma-separated names) and off otherwise; a member with any on says so at start.
//!
//! - `ack-before-commit`: a put is answered as soon as it is proposed, before raft commits it,
//!   so a leader lost at the wrong moment loses acknowledged writes. The checker must notice.

use std::sync::OnceLock;

/// The failpoints this process runs with.
fn active() -> &'static [String] {
    static ACTIVE: OnceLock<Vec<String>> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        std::env::var("RUSTCD_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
}

pub fn enabled(name: &str) -> bool {
    active().iter().any(|a| a == name)
}

/// Warns in the log when any failpoint is on.
pub fn announce() {
    if !active().is_empty() {
        tracing::warn!(failpoints = %active().join(","), "running with deliberate bugs switched on (RUSTCD_FAILPOINTS)");
    }
}
