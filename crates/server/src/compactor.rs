//! etcd's auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), run by the
//! leader alone, as etcd runs it:
//! - `periodic`: keep `retention` of history (a plain number is hours): every `min(retention,
//!   1h)` the leader compacts to the revision the store had `retention` ago. It samples the
//!   revision every tenth of that interval to know it.
//! - `revision`: keep the last `retention` revisions: every 5 minutes the leader compacts to
//!   the current revision minus `retention`.

use std::collections::VecDeque;
use std::time::Duration;

use rustcd_api::etcdserverpb::CompactionRequest;
use tokio::time::Instant;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// What to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Period(Duration),
    Revisions(i64),
}

impl Retention {
    /// Reads etcd's two flags; `None` when auto-compaction is off (retention 0).
    pub fn parse(mode: &str, retention: &str) -> Result<Option<Retention>, String> {
        let bad = || format!("invalid auto compaction retention {retention:?} for mode {mode:?}");
        let r = match mode {
            "revision" => Retention::Revisions(retention.trim().parse::<i64>().map_err(|_| bad())?),
            "periodic" => Retention::Period(match retention.trim().parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours.saturating_mul(3600)),
                Err(_) => crate::config::parse_duration(retention).ok_or_else(bad)?,
            }),
            _ => return Err(format!("unknown auto-compaction-mode {mode:?}")),
        };
        Ok(match r {
            Retention::Revisions(n) if n <= 0 => None,
            Retention::Period(d) if d.is_zero() => None,
            r => Some(r),
        })
    }
}

/// Runs the compactor until the server goes away.
pub async fn run(s: std::sync::Weak<EtcdServer>, retention: Retention) {
    let (interval, sample) = match retention {
        Retention::Period(p) => {
            let every = p.min(Duration::from_secs(3600));
            (every, every / 10)
        }
        Retention::Revisions(_) => (Duration::from_secs(300), Duration::from_secs(300)),
    };
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut last_run = Instant::now();
    let mut compacted = 0i64;
    loop {
        tokio::time::sleep(sample.max(Duration::from_millis(10))).await;
        let Some(s) = s.upgrade() else { return };
        let now = Instant::now();
        let rev = s.store().current_rev();
        samples.push_back((now, rev));
        let target = match retention {
            Retention::Period(p) => {
                while samples.len() > 1 && samples[1].0 + p <= now {
                    samples.pop_front();
                }
                match samples.front() {
                    Some(&(at, r)) if at + p <= now => r,
                    _ => continue,
                }
            }
            Retention::Revisions(n) => {
                samples.clear();
                rev - n
            }
        };
        if now < last_run + interval || s.leader() != s.member_id() || target <= compacted.max(0) {
            continue;
        }
        last_run = now;
        let (mode, field) = match retention {
            Retention::Period(p) => ("periodic", format!("{p:?}")),
            Retention::Revisions(n) => ("revision", n.to_string()),
        };
        tracing::info!(revision = target, retention = %field, "starting auto {mode} compaction");
        match s.compact(CompactionRequest { revision: target, physical: false }).await {
            Ok(_) => {
                compacted = target;
                tracing::info!(revision = target, retention = %field, "completed auto {mode} compaction");
            }
            Err(ServerError::Compacted) => compacted = target,
            Err(e) => tracing::warn!(revision = target, error = %e, "failed auto {mode} compaction"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_retention_forms() {
        assert_eq!(Retention::parse("periodic", "0"), Ok(None));
        assert_eq!(Retention::parse("periodic", "1"), Ok(Some(Retention::Period(Duration::from_secs(3600)))));
        assert_eq!(Retention::parse("periodic", "5m"), Ok(Some(Retention::Period(Duration::from_secs(300)))));
        assert_eq!(Retention::parse("revision", "1000"), Ok(Some(Retention::Revisions(1000))));
        assert!(Retention::parse("revision", "5m").is_err());
    }
}
