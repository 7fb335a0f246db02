//! rustcd-tests: the one harness every process-level test uses.
//!
//! [`Cluster::start`] runs real `etcd` processes (ours, or the real etcd for side-by-side
//! runs) on free loopback ports with their own data dirs; [`Cluster::etcdctl`] runs the real
//! `etcdctl`; [`wait_for`] polls a condition with a deadline. Dropping a cluster kills every
//! process it started and removes its directories; when the test failed, member logs are
//! printed first.

pub mod linearizability;
pub mod proxy;
pub mod watch_check;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// Which server binary a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Rustcd,
    /// The real etcd from Debian's `etcd-server` package.
    Etcd,
}

/// Path of a binary built from this workspace (`etcd`, `etcdctl`...), next to the test's.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs from target/<profile>/deps/, a tool such as rustcd-bench from target/<profile>/.
    let here = exe.parent().expect("executable dir");
    let bin = [here.join(name), here.parent().map(|d| d.join(name)).unwrap_or_default()]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| here.join(name));
    assert!(bin.exists(), "{} not built: run `cargo build --bins` first (the test command does)", bin.display());
    bin
}

/// The real etcd tools, installed by the test command when missing.
pub const REAL_ETCDCTL: &str = "/usr/bin/etcdctl";
pub const REAL_ETCD: &str = "/usr/bin/etcd";

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

/// A free TCP port on loopback, never one this process was given before: the kernel may hand
/// a released port out again, and two members of one cluster must not get the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = l.local_addr().expect("local addr").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One member process.
pub struct Member {
    pub name: String,
    /// Loopback address the member listens on.
    pub host: String,
    /// When set, the member starts with only `--config-file` (the seed walkthrough's way).
    pub config_file: Option<PathBuf>,
    /// A member joining later: its own `--initial-cluster`, started with state `existing`.
    pub joining_cluster: Option<String>,
    pub client_port: u16,
    pub peer_port: u16,
    /// The port of a fault-injecting proxy in front of `peer_port`, advertised to peers.
    pub proxy_port: Option<u16>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    /// Environment variables the member starts with (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.client_port)
    }
    pub fn client_url(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.host, self.peer_port)
    }
    /// The peer URL other members use: the proxy's when there is one.
    pub fn advertised_peer_url(&self) -> String {
        format!("http://{}:{}", self.host, self.proxy_port.unwrap_or(self.peer_port))
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A set of member processes of one kind, on loopback.
pub struct Cluster {
    pub server: Server,
    pub members: Vec<Member>,
    /// With [`Cluster::start_proxied`], the proxy in front of each member's peer port.
    pub proxies: Vec<proxy::Proxy>,
    dir: TempDir,
    initial_cluster: String,
}

impl Cluster {
    /// Starts `n` members of rustcd and waits until they serve.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(Server::Rustcd, n, &[])
    }

    /// Starts `n` members of `server` with extra flags for every member.
    pub fn start_with(server: Server, n: usize, extra: &[&str]) -> Cluster {
        Self::start_inner(server, n, extra, false)
    }

    /// Starts `n` rustcd members whose peers reach them through fault-injecting proxies.
    pub fn start_proxied(n: usize, extra: &[&str]) -> Cluster {
        Self::start_inner(Server::Rustcd, n, extra, true)
    }

    fn start_inner(server: Server, n: usize, extra: &[&str], proxied: bool) -> Cluster {
        let dir = tempfile::Builder::new().prefix("rustcd-test-").tempdir().expect("temp dir");
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("m{i}");
            members.push(Member {
                host: "127.0.0.1".into(),
                config_file: None,
                joining_cluster: None,
                data_dir: dir.path().join(format!("{name}.etcd")),
                log: dir.path().join(format!("{name}.log")),
                name,
                client_port: free_port(),
                peer_port: free_port(),
                proxy_port: proxied.then(free_port),
                extra_args: extra.iter().map(|s| s.to_string()).collect(),
                env: vec![],
                child: None,
            });
        }
        let initial_cluster =
            members.iter().map(|m| format!("{}={}", m.name, m.advertised_peer_url())).collect::<Vec<_>>().join(",");
        let proxies =
            members.iter().filter_map(|m| Some(proxy::Proxy::start(m.proxy_port?, m.peer_port))).collect::<Vec<_>>();
        let mut c = Cluster { server, members, proxies, dir, initial_cluster };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_ready(i);
        }
        c
    }

    /// Starts rustcd members each from its YAML config file, as the seed walkthrough does.
    /// `members` gives each one's name, host, client port and peer port, matching the files.
    pub fn start_from_configs(dir: TempDir, members: Vec<(String, String, u16, u16, PathBuf)>) -> Cluster {
        let members: Vec<Member> = members
            .into_iter()
            .map(|(name, host, client_port, peer_port, cfg)| Member {
                data_dir: dir.path().join(format!("{name}.etcd")),
                log: dir.path().join(format!("{name}.log")),
                name,
                host,
                config_file: Some(cfg),
                joining_cluster: None,
                client_port,
                peer_port,
                proxy_port: None,
                extra_args: vec![],
                env: vec![],
                child: None,
            })
            .collect();
        let n = members.len();
        let mut c = Cluster { server: Server::Rustcd, members, proxies: vec![], dir, initial_cluster: String::new() };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_ready(i);
        }
        c
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn binary(&self) -> PathBuf {
        match self.server {
            Server::Rustcd => workspace_bin("etcd"),
            Server::Etcd => PathBuf::from(REAL_ETCD),
        }
    }

    fn spawn(&mut self, i: usize) {
        let bin = self.binary();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log).expect("open member log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(bin);
        cmd.envs(m.env.iter().map(|(k, v)| (k, v)));
        if let Some(cfg) = &m.config_file {
            cmd.arg("--config-file").arg(cfg).stdin(Stdio::null()).stdout(log).stderr(log2);
            m.child = Some(cmd.spawn().expect("spawn member"));
            return;
        }
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(m.client_url())
            .arg("--advertise-client-urls")
            .arg(m.client_url())
            .arg("--listen-peer-urls")
            .arg(m.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(m.advertised_peer_url())
            .arg("--initial-cluster")
            .arg(m.joining_cluster.as_ref().unwrap_or(&self.initial_cluster))
            .args(if m.joining_cluster.is_some() { &["--initial-cluster-state", "existing"][..] } else { &[] })
            .args(&m.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if self.server == Server::Etcd {
            cmd.args(["--logger", "zap"]);
        }
        m.child = Some(cmd.spawn().expect("spawn member"));
    }

    /// Waits until member `i` answers a serializable read.
    pub fn wait_ready(&self, i: usize) {
        let ep = self.members[i].endpoint();
        wait_for(&format!("member {i} to serve"), Duration::from_secs(20), || {
            let out = etcdctl(&[&ep], &["get", "x", "--consistency=s", "--dial-timeout=300ms", "--command-timeout=1s"]);
            out.status.success().then_some(())
        });
    }

    /// Waits until a linearizable write succeeds through member `i` (a leader exists).
    pub fn wait_writable(&self, i: usize) {
        let ep = self.members[i].endpoint();
        wait_for("a writable cluster", Duration::from_secs(20), || {
            let out = etcdctl(&[&ep], &["put", "__harness_probe", "1", "--command-timeout=2s"]);
            out.status.success().then_some(())
        });
    }

    /// A new member's name and peer URL, to `member add` before [`Cluster::start_joining`].
    pub fn plan_member(&mut self, name: &str) -> (usize, String) {
        let i = self.members.len();
        let mut current: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| format!("{}={}", m.name, m.advertised_peer_url()))
            .collect();
        let m = Member {
            name: name.to_string(),
            host: "127.0.0.1".into(),
            config_file: None,
            joining_cluster: None,
            client_port: free_port(),
            peer_port: free_port(),
            proxy_port: None,
            data_dir: self.dir.path().join(format!("{name}.etcd")),
            log: self.dir.path().join(format!("{name}.log")),
            extra_args: self.members.first().map(|m| m.extra_args.clone()).unwrap_or_default(),
            env: vec![],
            child: None,
        };
        current.push(format!("{}={}", m.name, m.peer_url()));
        let url = m.peer_url();
        self.members.push(Member { joining_cluster: Some(current.join(",")), ..m });
        (i, url)
    }

    /// Starts a planned member (after `member add`) and waits until it serves.
    pub fn start_joining(&mut self, i: usize) {
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Sends `signal` to member `i`; for SIGKILL/SIGTERM/SIGINT waits for it to exit.
    pub fn kill(&mut self, i: usize, signal: i32) {
        let m = &mut self.members[i];
        let Some(child) = m.child.as_mut() else {
            return;
        };
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        if signal == libc::SIGKILL || signal == libc::SIGTERM || signal == libc::SIGINT {
            let _ = child.wait();
            m.child = None;
        }
    }

    /// Restarts a stopped member with the same flags and waits until it serves.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is still running");
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Starts a stopped member without waiting for it to serve.
    pub fn start_only(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is still running");
        self.spawn(i);
    }

    /// Waits up to `deadline` for member `i` to exit by itself: its exit status, or `None` if it
    /// is still running then.
    pub fn wait_exit(&mut self, i: usize, deadline: Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        let child = self.members[i].child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.members[i].child = None;
                return Some(status);
            }
            if started.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts member `i` (SIGKILL, then start) with the failpoint `point` set to crash it the
    /// `after + 1`th time it is reached; calls `trigger` until the member aborts there (60 s at
    /// most), then restarts it without the failpoint and waits until it serves.
    pub fn crash_at(&mut self, i: usize, point: &str, after: u32, mut trigger: impl FnMut(&Cluster)) {
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

    /// Checks that member `i` exited with `status` by aborting at the failpoint `point`, and
    /// clears its failpoints for the next start.
    pub fn assert_aborted_at(&mut self, i: usize, status: std::process::ExitStatus, point: &str) {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGABRT), "member {i} aborted at {point}: {status:?}");
        let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        assert!(log.contains(&format!("failpoint {point} panic")), "member {i} says it stopped at {point}");
        eprintln!("member {i} crashed at {point}");
        self.members[i].env.clear();
    }

    /// All client endpoints, `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint()).collect()
    }

    /// Runs the real etcdctl against member `i`.
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> Output {
        etcdctl(&[&self.members[i].endpoint()], args)
    }

    /// Runs the real etcdctl against member `i` with `stdin` as input.
    pub fn etcdctl_stdin(&self, i: usize, args: &[&str], stdin: &str) -> Output {
        Ctl::Real.run(&self.members[i].endpoint(), args, Some(stdin))
    }

    fn dump_logs(&self) {
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- log of {} ({}) ----", m.name, m.log.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Runs the real etcdctl with `--endpoints`.
pub fn etcdctl(endpoints: &[&str], args: &[&str]) -> Output {
    Ctl::Real.run(&endpoints.join(","), args, None)
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `Error: ...` lines of stderr (etcdctl's client-side retry logs are left out).
pub fn error_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.starts_with("Error:")).map(str::to_string).collect()
}

/// A gRPC channel to `endpoint` (`host:port`).
pub async fn channel(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect")
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

/// A live member's view: leader flag and raft term, read with `etcdctl endpoint status`.
pub fn endpoint_status(endpoint_url: &str) -> Option<(bool, u64, String)> {
    let out = etcdctl(&[endpoint_url], &["endpoint", "status", "-w", "json", "--command-timeout=2s"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
    let st = &v[0]["Status"];
    let leader = st["leader"].as_u64()?;
    let me = st["header"]["member_id"].as_u64()?;
    Some((leader == me && leader != 0, st["raftTerm"].as_u64()?, format!("{leader:x}")))
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
pub fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut end = p.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

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

/// Index of the current leader, found through any running member.
pub fn leader_index(c: &Cluster) -> Option<usize> {
    c.members.iter().position(|m| m.is_running() && endpoint_status(&m.endpoint()).is_some_and(|s| s.0))
}

/// The lease ID in `etcdctl lease grant` output ("lease 694d7a6b0f2a4c0a granted with TTL(5s)").
pub fn lease_id(out: &Output) -> String {
    stdout(out).split_whitespace().nth(1).expect("lease id in etcdctl output").to_string()
}

/// Starts a long-running etcdctl (keep-alive, lock holder, campaigner) with output discarded.
pub fn spawn_etcdctl(endpoints: &str, args: &[&str]) -> Child {
    Ctl::Real.spawn(endpoints, args)
}
