//! Judging a recorded run and writing what a person reads: the verdict (one line, counts,
//! problems, or JSON), `history.json`, `verdict.json`, and an HTML timeline per failing key.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rustcd_api::etcdserverpb::HashKvRequest;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_verify::linearizability::{self, Action, Op};
use rustcd_verify::record::{self, History, Watched, Workload};
use rustcd_verify::{minimize, timeline, watch_check};
use serde_json::json;
use tonic::transport::Channel;

pub struct Context<'a> {
    pub endpoints: &'a [String],
    pub channels: &'a [Channel],
    pub w: &'a Workload,
    pub start: Instant,
    pub clients: usize,
    /// The first revision of the run (after the prefix was cleared).
    pub from: i64,
}

/// A key whose operations show a violation, with the operations a person needs to see it.
pub struct Failing {
    pub key: String,
    /// `not linearizable` or `acknowledged write lost`.
    pub kind: &'static str,
    pub ops: Vec<Op>,
    pub culprit: Option<usize>,
}

pub struct Verdict {
    pub history: Vec<Op>,
    pub events: usize,
    pub faults: Vec<String>,
    pub failing: Vec<Failing>,
    /// Every violation and every check that could not be made, one line each.
    pub problems: Vec<String>,
    pub revision: i64,
}

/// Polls `f` every 200 ms until it gives a value or `limit` passes.
async fn poll<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ops on `key` around `op` (call order), with `op` marked: a lost write's context.
fn around(history: &[Op], key: &str, lost: &Op) -> (Vec<Op>, Option<usize>) {
    let mut ops: Vec<Op> = history.iter().filter(|o| o.key == key).cloned().collect();
    ops.sort_by_key(|o| (o.call, o.ret));
    let i = ops.iter().position(|o| o.call == lost.call && o.client == lost.client && o.action == lost.action);
    let i = i.unwrap_or(0);
    let (lo, hi) = (i.saturating_sub(6), (i + 7).min(ops.len()));
    (ops[lo..hi].to_vec(), Some(i - lo))
}

/// Judges the run: closes the history, reads the events back, and runs every check.
pub async fn judge(ctx: &Context<'_>, history: &History, watched: &[Watched], faults: Vec<String>) -> Verdict {
    let mut problems = Vec::new();
    let mut history = history.lock().unwrap_or_else(|p| p.into_inner()).clone();
    history.extend(closing_reads(ctx, &mut problems).await);
    let (marker, revision) = end_marker(ctx, &mut problems).await;
    let canonical = canonical_events(ctx, &marker, revision, &mut problems).await;
    let mut failing = not_linearizable(&history, &canonical, &mut problems);
    if let Err(e) = watch_check::check_prev_kv(&canonical) {
        problems.push(format!("watch prev_kv: {e}"));
    }
    lost_writes(&history, &canonical, &mut failing, &mut problems);
    check_hashes(ctx, revision, &mut problems).await;
    for (i, w) in watched.iter().enumerate() {
        check_watcher(i, w, &canonical, &marker, revision, &mut problems).await;
    }
    Verdict { history, events: canonical.len(), faults, failing, problems, revision }
}

/// Every member answers again (a restarted one may still be catching up), then each reads
/// every key: the reads that close the history.
async fn closing_reads(ctx: &Context<'_>, problems: &mut Vec<String>) -> Vec<Op> {
    let mut ops = Vec::new();
    for (i, ch) in ctx.channels.iter().enumerate() {
        let reads = poll(Duration::from_secs(30), || async {
            record::final_reads(ch.clone(), ctx.w, ctx.clients + i, ctx.start).await.ok()
        });
        match reads.await {
            Some(r) => ops.extend(r),
            None => problems.push(format!("member {} ({}) did not answer reads after the run", i, ctx.endpoints[i])),
        }
    }
    ops
}

/// The end of the run: a put of a marker key. Its revision is the one every member is asked
/// for, and every watch must deliver it (a progress notification will not do: etcd 3.4 answers
/// one with the store's revision before the watcher has caught up).
async fn end_marker(ctx: &Context<'_>, problems: &mut Vec<String>) -> (String, i64) {
    let marker = format!("{}~end", ctx.w.prefix);
    let put = || async {
        let req = rustcd_api::etcdserverpb::PutRequest {
            key: marker.as_bytes().to_vec().into(),
            value: b"end".to_vec().into(),
            ..Default::default()
        };
        let r = KvClient::new(ctx.channels[0].clone()).put(req).await.ok()?;
        r.into_inner().header.map(|h| h.revision)
    };
    let revision = poll(Duration::from_secs(30), put).await.unwrap_or_else(|| {
        problems.push("the marker put at the end of the run failed".to_string());
        0
    });
    (marker, revision)
}

/// Whether watcher `w` has delivered an event at `revision` or later.
async fn reached(w: &Watched, revision: i64) -> Option<()> {
    let log = w.lock().unwrap_or_else(|p| p.into_inner());
    (log.events.last().map_or(0, |e| e.rev) >= revision).then_some(())
}

/// The run's events from a fresh watch of the prefix (the marker left out): what happened.
async fn canonical_events(
    ctx: &Context<'_>,
    marker: &str,
    revision: i64,
    problems: &mut Vec<String>,
) -> Vec<watch_check::Seen> {
    let fresh = Watched::default();
    let task = tokio::spawn(record::watcher(ctx.channels[0].clone(), ctx.w.prefix.clone(), ctx.from, fresh.clone()));
    if poll(Duration::from_secs(20), || reached(&fresh, revision)).await.is_none() {
        problems.push(format!("a fresh watch did not reach revision {revision}"));
    }
    task.abort();
    let log = fresh.lock().unwrap_or_else(|p| p.into_inner());
    log.events.iter().filter(|e| e.rev <= revision && e.key != marker).cloned().collect()
}

/// The keys with no linearization, each with its smallest failing sub-history. Unanswered
/// writes no event shows never happened (values are unique): they are left out of the search.
fn not_linearizable(history: &[Op], canonical: &[watch_check::Seen], problems: &mut Vec<String>) -> Vec<Failing> {
    let written = canonical.iter().filter(|e| e.put).map(|e| (e.key.as_str(), e.value.as_str())).collect();
    let patched = linearizability::patch(history, &written);
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in &patched {
        by_key.entry(op.key.as_str()).or_default().push(op.clone());
    }
    let mut failing = Vec::new();
    for key in linearizability::check(&patched) {
        let ops = minimize::smallest_failing(by_key.get(key.as_str()).map_or(&[][..], |v| v));
        problems.push(format!("{key}: not linearizable ({} operations show it)", ops.len()));
        let culprit = ops.len().checked_sub(1);
        failing.push(Failing { key, kind: "not linearizable", ops, culprit });
    }
    failing
}

/// Acknowledged writes no event shows, each key's with a timeline unless it already has one;
/// and events no client wrote.
fn lost_writes(
    history: &[Op],
    canonical: &[watch_check::Seen],
    failing: &mut Vec<Failing>,
    problems: &mut Vec<String>,
) {
    let lost = watch_check::lost_writes(history, canonical);
    for op in &lost {
        problems.push(format!("{}: acknowledged write lost: {}", op.key, timeline::describe(&op.action)));
        if !failing.iter().any(|f| f.key == op.key) {
            let (ops, culprit) = around(history, &op.key, op);
            failing.push(Failing { key: op.key.clone(), kind: "acknowledged write lost", ops, culprit });
        }
    }
    if lost.is_empty()
        && let Err(e) = watch_check::check_writes(history, canonical)
    {
        problems.push(format!("watch: {e}"));
    }
}

/// Every member's HashKV at `revision` is the same.
async fn check_hashes(ctx: &Context<'_>, revision: i64, problems: &mut Vec<String>) {
    let mut hashes = Vec::new();
    for (i, ch) in ctx.channels.iter().enumerate() {
        let hash = poll(Duration::from_secs(15), || async {
            let r = MaintenanceClient::new(ch.clone()).hash_kv(HashKvRequest { revision }).await.ok()?;
            Some(r.into_inner().hash)
        });
        match hash.await {
            Some(h) => hashes.push(h),
            None => problems.push(format!("member {i} gave no HashKV at revision {revision}")),
        }
    }
    if hashes.windows(2).any(|w| w[0] != w[1]) {
        problems.push(format!("HashKV differs across members at revision {revision}: {hashes:x?}"));
    }
}

/// Watcher `i` delivered every event up to `revision`, in order, once, and no bookmark ahead.
async fn check_watcher(
    i: usize,
    w: &Watched,
    canonical: &[watch_check::Seen],
    marker: &str,
    revision: i64,
    problems: &mut Vec<String>,
) {
    if poll(Duration::from_secs(20), || reached(w, revision)).await.is_none() {
        problems.push(format!("watcher {i} did not reach revision {revision}"));
    }
    let log = w.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Err(e) = watch_check::check_bookmarks(&log) {
        problems.push(format!("watcher {i}: {e}"));
    }
    let seen: Vec<_> = log.events.into_iter().filter(|e| e.rev <= revision && e.key != marker).collect();
    if let Err(e) = watch_check::check_watcher(&seen, canonical) {
        problems.push(format!("watcher {i}: {e}"));
    } else if seen.len() != canonical.len() {
        problems.push(format!("watcher {i} saw {} of {} events", seen.len(), canonical.len()));
    }
}

fn file_name(key: &str) -> String {
    let safe: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("key{safe}.html")
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// `linearizable` (every check passed), `not linearizable`, or `failed` (another check).
    pub fn status(&self) -> &'static str {
        if self.ok() {
            "linearizable"
        } else if self.failing.iter().any(|f| f.kind == "not linearizable") {
            "not linearizable"
        } else {
            "failed"
        }
    }

    pub fn line(&self) -> String {
        match self.status() {
            "linearizable" => {
                format!("verdict: linearizable; watch guarantees held; members agree at revision {}", self.revision)
            }
            "not linearizable" => format!("verdict: NOT linearizable ({} problems)", self.problems.len()),
            _ => format!("verdict: FAILED ({} problems)", self.problems.len()),
        }
    }

    fn count(&self, f: fn(&Op) -> bool) -> usize {
        self.history.iter().filter(|o| f(o)).count()
    }

    pub fn counts(&self) -> String {
        format!(
            "operations: {} ({} puts, {} reads, {} deletes, {} compare-and-swaps, {} lease puts, {} revokes), unanswered: {}, watch events: {}, faults: {}",
            self.history.len(),
            self.count(|o| matches!(o.action, Action::Put(_))),
            self.count(|o| matches!(o.action, Action::Get(_))),
            self.count(|o| matches!(o.action, Action::Delete(_))),
            self.count(|o| matches!(o.action, Action::Cas { .. })),
            self.count(|o| matches!(o.action, Action::PutLease(..))),
            self.count(|o| matches!(o.action, Action::Revoke(_))),
            self.count(|o| o.ret.is_none()),
            self.events,
            self.faults.len(),
        )
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "verdict": self.status(),
            "operations": self.history.len(),
            "unanswered": self.count(|o| o.ret.is_none()),
            "watch_events": self.events,
            "revision": self.revision,
            "faults": self.faults,
            "problems": self.problems,
            "failing": self.failing.iter().map(|f| json!({
                "key": f.key,
                "kind": f.kind,
                "culprit": f.culprit,
                "operations": f.ops,
                "timeline": file_name(&f.key),
            })).collect::<Vec<_>>(),
        })
    }

    /// `history.json`, `verdict.json` and a timeline per failing key under `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let io = |e: std::io::Error| format!("writing the report to {}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(io)?;
        let history = serde_json::to_vec(&self.history).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("history.json"), history).map_err(io)?;
        std::fs::write(dir.join("verdict.json"), format!("{:#}\n", self.json())).map_err(io)?;
        for f in &self.failing {
            let page = timeline::html(&f.key, &format!("{}: {}", f.key, f.kind), &f.ops, f.culprit);
            std::fs::write(dir.join(file_name(&f.key)), page).map_err(io)?;
        }
        Ok(())
    }
}
