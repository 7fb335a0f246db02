//! rustcd-testkit: what process-level tests add to the local clusters of `rustcd-cluster`
//! (re-exported here, so a test needs only this crate): [`Ctl`] runs the real `etcdctl` or
//! ours, [`ClusterExt`] runs it against a member and crashes members at failpoints, writers and
//! [`verify_cluster`] check that acknowledged writes survive, and the checkers of
//! `rustcd-verify` ([`linearizability`], [`watch_check`], re-exported) judge recorded histories.
//!
//! Test-only: no product crate depends on it.

pub use rustcd_verify::{linearizability, watch_check};

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use rustcd_cluster::*;

/// The real etcdctl, from Debian's `etcd-client` package (the test command installs it).
pub const REAL_ETCDCTL: &str = "/usr/bin/etcdctl";

/// Which etcdctl a test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctl {
    /// The real etcdctl from Debian's `etcd-client` package.
    Real,
    /// rustcd's `etcdctl`, built from this workspace.
    Ours,
}

impl Ctl {
    /// Path of the binary.
    pub fn path(self) -> PathBuf {
        match self {
            Ctl::Real => PathBuf::from(REAL_ETCDCTL),
            Ctl::Ours => workspace_bin("etcdctl"),
        }
    }

    /// `etcdctl --endpoints=...` with stdin closed, ready for arguments.
    pub fn command(self, endpoints: &str) -> Command {
        let mut cmd = Command::new(self.path());
        cmd.arg(format!("--endpoints={endpoints}")).env("ETCDCTL_API", "3").stdin(Stdio::null());
        cmd
    }

    /// Runs `args`, feeding `stdin` when given.
    pub fn run(self, endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = self.command(endpoints);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn etcdctl (is etcd-client installed? are the bins built?)");
        if let (Some(mut s), Some(input)) = (child.stdin.take(), stdin) {
            s.write_all(input.as_bytes()).expect("write etcdctl stdin");
        }
        child.wait_with_output().expect("etcdctl output")
    }

    /// Starts a long-running etcdctl (keep-alive, lock holder, campaigner) with output discarded.
    pub fn spawn(self, endpoints: &str, args: &[&str]) -> Child {
        self.command(endpoints).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn etcdctl")
    }
}

/// What tests add to a [`Cluster`]: the real etcdctl against a member, crashes at failpoints.
pub trait ClusterExt {
    /// Runs the real etcdctl against member `i`.
    fn etcdctl(&self, i: usize, args: &[&str]) -> Output;
    /// Runs the real etcdctl against member `i` with `stdin` as input.
    fn etcdctl_stdin(&self, i: usize, args: &[&str], stdin: &str) -> Output;
    /// Restarts member `i` (SIGKILL, then start) with the failpoint `point` set to crash it the
    /// `after + 1`th time it is reached; calls `trigger` until the member aborts there (60 s at
    /// most), then restarts it without the failpoint and waits until it serves.
    fn crash_at(&mut self, i: usize, point: &str, after: u32, trigger: impl FnMut(&Cluster));
    /// Checks that member `i` exited with `status` by aborting at the failpoint `point`, and
    /// clears its failpoints for the next start.
    fn assert_aborted_at(&mut self, i: usize, status: std::process::ExitStatus, point: &str);
}

impl ClusterExt for Cluster {
    fn etcdctl(&self, i: usize, args: &[&str]) -> Output {
        etcdctl(&[&self.members[i].endpoint()], args)
    }

    fn etcdctl_stdin(&self, i: usize, args: &[&str], stdin: &str) -> Output {
        Ctl::Real.run(&self.members[i].endpoint(), args, Some(stdin))
    }

    fn crash_at(&mut self, i: usize, point: &str, after: u32, mut trigger: impl FnMut(&Cluster)) {
        self.kill(i, libc::SIGKILL);
        self.members[i].env = vec![("FAILPOINTS".into(), format!("{point}={after}*off->panic"))];
        self.start_only(i);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            trigger(self);
            if let Some(s) = self.wait_exit(i, Duration::from_millis(250)) {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "member {i} never reached {point}");
        };
        self.assert_aborted_at(i, status, point);
        self.restart(i);
    }

    fn assert_aborted_at(&mut self, i: usize, status: std::process::ExitStatus, point: &str) {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGABRT), "member {i} aborted at {point}: {status:?}");
        let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        assert!(log.contains(&format!("failpoint {point} panic")), "member {i} says it stopped at {point}");
        eprintln!("member {i} crashed at {point}");
        self.members[i].env.clear();
    }
}

/// A process killed (and reaped) when this is dropped: when its test ends, passed or failed.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the real etcdctl with `--endpoints`.
pub fn etcdctl(endpoints: &[&str], args: &[&str]) -> Output {
    Ctl::Real.run(&endpoints.join(","), args, None)
}

/// A plain HTTP/1.1 GET on loopback: the whole response, status line and headers included.
pub fn http_get(port: u16, path: &str) -> String {
    http_request(port, "GET", path, "")
}

/// A plain HTTP/1.1 request with a body on loopback: the whole response.
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> String {
    http_request_with(port, method, path, &[], body)
}

/// [`http_request`] with extra headers.
pub fn http_request_with(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    use std::io::Read;
    let mut s = send_request(&format!("127.0.0.1:{port}"), method, path, headers, body);
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// Connects to `addr` and sends one HTTP/1.1 request (`Connection: close`) in one write, so that
/// the body never arrives after an early answer closed the connection.
fn send_request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    s
}

/// A streamed HTTP answer being read: the request is sent at once, lines of its (de-chunked)
/// body are read as they come.
pub struct HttpStream {
    sock: std::net::TcpStream,
    raw: Vec<u8>,
    /// Bytes of the head (status line and headers), once it has arrived.
    head_len: Option<usize>,
    ended: bool,
}

impl HttpStream {
    /// Sends `method path` with `body` (and `Connection: close`) to `127.0.0.1:port`.
    pub fn open(port: u16, method: &str, path: &str, body: &str) -> Self {
        Self::open_at(&format!("127.0.0.1:{port}"), method, path, body)
    }

    /// Sends `method path` with `body` (and `Connection: close`) to `addr` (`host:port`).
    pub fn open_at(addr: &str, method: &str, path: &str, body: &str) -> Self {
        let sock = send_request(addr, method, path, &[], body);
        sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        HttpStream { sock, raw: Vec::new(), head_len: None, ended: false }
    }

    /// The status code (waits for the head).
    pub fn status(&mut self, deadline: Duration) -> u16 {
        let until = Instant::now() + deadline;
        while self.head_len.is_none() && !self.ended && Instant::now() < until {
            self.read_some();
        }
        let head = String::from_utf8_lossy(&self.raw[..self.head_len.unwrap_or(0)]).into_owned();
        head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// The body's complete lines so far, reading until there are `n` of them, the answer
    /// ends, or `deadline` passes. A last piece without a newline counts once the answer ended.
    pub fn lines(&mut self, n: usize, deadline: Duration) -> Vec<String> {
        let until = Instant::now() + deadline;
        loop {
            let body = self.body();
            let mut lines: Vec<String> = body.split_inclusive('\n').map(str::to_string).collect();
            if !self.ended && lines.last().is_some_and(|l| !l.ends_with('\n')) {
                lines.pop();
            }
            if lines.len() >= n || self.ended || Instant::now() >= until {
                return lines.into_iter().map(|l| l.trim_end().to_string()).collect();
            }
            self.read_some();
        }
    }

    fn read_some(&mut self) {
        use std::io::Read;
        let mut buf = [0u8; 65536];
        match self.sock.read(&mut buf) {
            Ok(0) => self.ended = true,
            Ok(n) => self.raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => self.ended = true,
        }
        if self.head_len.is_none() {
            self.head_len = self.raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        }
    }

    /// The body received so far, de-chunked when the answer is chunked.
    fn body(&self) -> String {
        let Some(h) = self.head_len else { return String::new() };
        let head = String::from_utf8_lossy(&self.raw[..h]).to_lowercase();
        let body = String::from_utf8_lossy(&self.raw[h..]).into_owned();
        if head.contains("transfer-encoding: chunked") { dechunk(&body) } else { body }
    }
}

/// The data of an HTTP/1.1 chunked body: its complete chunks, in order (a chunk still arriving
/// is left out).
pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `Error: ...` lines of stderr (etcdctl's client-side retry logs are left out).
pub fn error_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.starts_with("Error:")).map(str::to_string).collect()
}

/// Replaces the values that differ between fresh clusters (cluster and member IDs) with `<id>`.
pub fn mask_ids(text: &str) -> String {
    let mut out = text.to_string();
    for key in ["\"cluster_id\":", "\"member_id\":", "\"ClusterID\" : ", "\"MemberID\" : "] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(pos) = rest.find(key) {
            result.push_str(&rest[..pos + key.len()]);
            rest = &rest[pos + key.len()..];
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            result.push_str("<id>");
            rest = &rest[digits..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// What a command printed, as a parity test compares it.
#[derive(Debug, PartialEq, Eq)]
pub struct Printed {
    pub stdout: String,
    pub errors: Vec<String>,
    pub code: Option<i32>,
}

impl Printed {
    pub fn of(o: &Output) -> Printed {
        Printed { stdout: mask_ids(&stdout(o)), errors: error_lines(o), code: o.status.code() }
    }
}

/// Runs `etcdctl watch ...` until its stdout has `lines` lines (or it exits), then stops it.
pub fn etcdctl_watch(endpoint: &str, args: &[&str], lines: usize, deadline: Duration) -> Printed {
    ctl_watch(Ctl::Real, endpoint, args, lines, deadline)
}

/// [`etcdctl_watch`] with the etcdctl of choice.
pub fn ctl_watch(ctl: Ctl, endpoint: &str, args: &[&str], lines: usize, deadline: Duration) -> Printed {
    use std::io::Read;
    let out_path = std::env::temp_dir().join(format!("rustcd-watch-{}-{}", std::process::id(), free_port()));
    let out_file = std::fs::File::create(&out_path).expect("watch output file");
    let mut child =
        ctl.command(endpoint).args(args).stdout(out_file).stderr(Stdio::piped()).spawn().expect("spawn etcdctl watch");
    let end = Instant::now() + deadline;
    let mut code = None;
    loop {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text.lines().count() >= lines {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            code = status.code();
            break;
        }
        if Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    Printed {
        stdout: mask_ids(&text),
        errors: err.lines().filter(|l| l.starts_with("Error:")).map(str::to_string).collect(),
        code,
    }
}

/// Parses `etcdctl endpoint status -w table` rows: (endpoint, id, is leader, raft term).
pub fn parse_status_table(text: &str) -> Vec<(String, String, bool, u64)> {
    text.lines()
        .filter(|l| l.starts_with("| http") || l.starts_with("| 127"))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            // | ENDPOINT | ID | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | ...
            Some((cols[1].to_string(), cols[2].to_string(), cols[5] == "true", cols[7].parse().ok()?))
        })
        .collect()
}

/// Every key-value under `prefix` on the member at `endpoint`, read locally (serializable).
pub async fn local_kvs(endpoint: &str, prefix: &[u8]) -> Result<(i64, Vec<(Vec<u8>, Vec<u8>)>), tonic::Status> {
    use rustcd_api::etcdserverpb::RangeRequest;
    use rustcd_api::etcdserverpb::kv_client::KvClient;
    let mut kv = KvClient::new(channel(endpoint).await);
    let resp = kv
        .range(RangeRequest {
            key: prefix.to_vec().into(),
            range_end: prefix_end(prefix).into(),
            serializable: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let rev = resp.header.map(|h| h.revision).unwrap_or(0);
    Ok((rev, resp.kvs.into_iter().map(|kv| (kv.key.to_vec(), kv.value.to_vec())).collect()))
}

/// etcd's prefix end: the key with its last byte below 0xff incremented.
pub use rustcd_gocompat::prefix_end;

/// HashKV of the member at `endpoint` at `revision`.
pub async fn hash_kv(endpoint: &str, revision: i64) -> Result<u32, tonic::Status> {
    use rustcd_api::etcdserverpb::HashKvRequest;
    use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
    let mut m = MaintenanceClient::new(channel(endpoint).await);
    Ok(m.hash_kv(HashKvRequest { revision }).await?.into_inner().hash)
}

/// Writes acknowledged by the cluster: key -> value.
pub type Acked = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

/// Starts `writers` tasks that put `prefix/w<i>/<n>` keys, each trying the members in turn
/// until one acknowledges; every acknowledged write is recorded. Stops when `stop` is set.
pub fn start_writers(
    endpoints: Vec<String>,
    prefix: &str,
    writers: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    use rustcd_api::etcdserverpb::PutRequest;
    use rustcd_api::etcdserverpb::kv_client::KvClient;
    use std::sync::atomic::Ordering;
    let acked: Acked = Default::default();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (endpoints, acked, stop, prefix) = (endpoints.clone(), acked.clone(), stop.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut target = w % endpoints.len();
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("{prefix}/w{w}/{n}");
                let put = PutRequest {
                    key: key.clone().into_bytes().into(),
                    value: n.to_string().into_bytes().into(),
                    ..Default::default()
                };
                let ep = tonic::transport::Endpoint::from_shared(format!("http://{}", endpoints[target]))
                    .expect("endpoint")
                    .connect_timeout(Duration::from_millis(500))
                    .timeout(Duration::from_secs(3));
                let ok = match ep.connect().await {
                    Ok(ch) => KvClient::new(ch).put(put).await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    acked.lock().expect("acked lock").insert(key, n.to_string());
                } else {
                    target = (target + 1) % endpoints.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    (acked, tasks)
}

/// Waits until `more` writes beyond those acknowledged so far are acknowledged (60 s at most).
pub async fn progress(acked: &Acked, more: usize) {
    let target = acked.lock().expect("acked lock").len() + more;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("acked lock").len() < target {
        assert!(Instant::now() < deadline, "writes stalled at {}", acked.lock().expect("acked lock").len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops the writers [`start_writers`] started and waits for them.
pub async fn stop_writers(stop: &std::sync::atomic::AtomicBool, tasks: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
}

/// Checks that every running member holds every acknowledged write under `prefix`, and that
/// all of them have the same revision and the same HashKV there.
pub async fn verify_cluster(c: &Cluster, acked: &Acked, prefix: &str) {
    let acked = acked.lock().expect("acked lock").clone();
    let running: Vec<String> = c.members.iter().filter(|m| m.is_running()).map(|m| m.endpoint()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut states = Vec::new();
    loop {
        states.clear();
        for ep in &running {
            if let Ok(s) = local_kvs(ep, prefix.as_bytes()).await {
                states.push(s);
            }
        }
        let same = states.len() == running.len() && states.iter().all(|s| s.0 == states[0].0);
        if same {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members did not converge: revisions {:?}",
            states.iter().map(|s| s.0).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (ep, (rev, kvs)) in running.iter().zip(&states) {
        let stored: std::collections::HashMap<String, String> = kvs
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let lost: Vec<_> = acked.iter().filter(|(k, v)| stored.get(*k) != Some(v)).collect();
        assert!(
            lost.is_empty(),
            "{ep} at revision {rev} lost {} of {} acknowledged writes, e.g. {:?}",
            lost.len(),
            acked.len(),
            lost.first()
        );
    }
    let rev = states[0].0;
    let mut hashes = Vec::new();
    for ep in &running {
        hashes.push(hash_kv(ep, rev).await.expect("hashkv"));
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "HashKV differs at revision {rev}: {hashes:?}");
}

/// The lease ID in `etcdctl lease grant` output ("lease 694d7a6b0f2a4c0a granted with TTL(5s)").
pub fn lease_id(out: &Output) -> String {
    stdout(out).split_whitespace().nth(1).expect("lease id in etcdctl output").to_string()
}

/// Starts a long-running etcdctl (keep-alive, lock holder, campaigner) with output discarded.
pub fn spawn_etcdctl(endpoints: &str, args: &[&str]) -> Child {
    Ctl::Real.spawn(endpoints, args)
}
