//! etcd's auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), run by the
//! leader alone, as etcd runs it:
//! - `periodic`: keep `retention` of history (a plain number is hours): every `min(retention,
//!   1h)` the leader compacts to the revision the store had `retention` ago. It samples the
//!   revision every tenth of that interval to know it.
//! - `revision`: keep the last `retention` revisions: every 5 minutes the leader compacts to
//!   the current revision minus `retention`.

use std::collections::VecDeque;
use std::time::Duration;

use crate::etcdserver::request::Op;
use rustcd_api::etcdserverpb::CompactionRequest;
use tokio::time::Instant;

use crate::config::settings::Retention;
use crate::error::ServerError;
use crate::etcdserver::server::EtcdServer;
use rustcd_gocompat::format_duration as go_duration;

/// Runs the compactor until the server goes away.
pub async fn run(s: std::sync::Weak<EtcdServer>, retention: Retention) {
    let state = || s.upgrade().map(|s| (s.store().current_rev(), s.leader() == s.member_id()));
    let compact = |revision: i64| {
        let s = s.clone();
        async move {
            match s.upgrade() {
                Some(s) => s
                    .propose_internal(Op::Compaction(CompactionRequest { revision, physical: false }))
                    .await
                    .map(|_| ()),
                None => Ok(()),
            }
        }
    };
    schedule(retention, state, compact).await
}

/// The compactor's schedule, on tokio's clock: `state` gives the store's revision and whether
/// this member leads (`None` once the server is gone), `compact` compacts.
async fn schedule<F, Fut>(retention: Retention, state: impl Fn() -> Option<(i64, bool)>, compact: F)
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = Result<(), ServerError>>,
{
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
        let Some((rev, leads)) = state() else { return };
        let now = Instant::now();
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
        if now < last_run + interval || !leads || target <= compacted.max(0) {
            continue;
        }
        last_run = now;
        let started = std::time::Instant::now();
        match retention {
            Retention::Period(p) => {
                tracing::info!(revision = target, compact_period = %go_duration(p), "starting auto periodic compaction")
            }
            Retention::Revisions(n) => tracing::info!(
                revision = target,
                revision_compaction_retention = n,
                "starting auto revision compaction"
            ),
        }
        match compact(target).await {
            Ok(()) => {
                compacted = target;
                let took = go_duration(started.elapsed());
                match retention {
                    Retention::Period(p) => {
                        tracing::info!(revision = target, compact_period = %go_duration(p), took = %took, "completed auto periodic compaction")
                    }
                    Retention::Revisions(n) => {
                        tracing::info!(revision = target, revision_compaction_retention = n, took = %took, "completed auto revision compaction")
                    }
                }
            }
            Err(ServerError::Compacted) => compacted = target,
            Err(e) => {
                tracing::warn!(revision = target, error = %e, retry_interval = %go_duration(sample), "failed auto compaction")
            }
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

    /// Runs the schedule for `hours` of tokio's (paused) clock over a store whose revision grows
    /// by 10 a second, leading only while `leads` says so; returns each compaction as (seconds
    /// since the start, revision).
    async fn compactions(retention: Retention, hours: u64, leads: fn(u64) -> bool) -> Vec<(u64, i64)> {
        let start = Instant::now();
        let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let secs = move || (Instant::now() - start).as_secs();
        let state = move || Some((secs() as i64 * 10, leads(secs())));
        let record = done.clone();
        let compact = move |rev: i64| {
            record.lock().expect("lock").push((secs(), rev));
            async { Ok(()) }
        };
        let task = tokio::spawn(schedule(retention, state, compact));
        tokio::time::sleep(Duration::from_secs(hours * 3600)).await;
        task.abort();
        done.lock().expect("lock").clone()
    }

    /// etcd's revision mode: every 5 minutes, the revision then minus the retention.
    #[tokio::test(start_paused = true)]
    async fn revision_mode_keeps_the_last_revisions_every_five_minutes() {
        let got = compactions(Retention::Revisions(1000), 1, |_| true).await;
        let want: Vec<(u64, i64)> = (1..12).map(|i| (i * 300, i as i64 * 3000 - 1000)).collect();
        assert_eq!(got, want);
    }

    /// etcd's periodic mode: every `min(retention, 1h)`, the revision the store had a retention
    /// ago (sampled every tenth of the interval).
    #[tokio::test(start_paused = true)]
    async fn periodic_mode_keeps_the_retention_of_history() {
        for (retention, every) in [(Duration::from_secs(600), 600), (Duration::from_secs(3 * 3600), 3600)] {
            let got = compactions(Retention::Period(retention), 8, |_| true).await;
            assert!(got.len() >= 4, "{retention:?}: {got:?}");
            for pair in got.windows(2) {
                assert!(pair[1].0 - pair[0].0 >= every, "{retention:?}: at most one compaction an interval: {got:?}");
            }
            for &(at, rev) in &got {
                // The revision of `retention` ago, give or take one sample.
                let ago = at - retention.as_secs();
                assert!(
                    rev <= ago as i64 * 10 && rev >= (ago - every / 10) as i64 * 10,
                    "{retention:?}: at {at}s compacted {rev}"
                );
            }
        }
    }

    /// Only the leader compacts.
    #[tokio::test(start_paused = true)]
    async fn followers_do_not_compact() {
        let got = compactions(Retention::Revisions(10), 1, |secs| secs >= 1800).await;
        assert!(got.iter().all(|(at, _)| *at >= 1800), "{got:?}");
        assert_eq!(got.first().map(|c| c.0), Some(1800));
    }
}
