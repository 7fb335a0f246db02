//! etcd's v2 discovery (`--discovery`), against a real discovery service: the real etcd 3.4
//! with its v2 keys API on, as a private discovery service is run. Three rustcd members that
//! know only the discovery URL form one cluster; a fourth finds it full; a token without a
//! size is refused with etcd's words; a member that finds the cluster full becomes etcd's HTTP
//! proxy to it (`--discovery-fallback=proxy`), as does `--proxy=readonly`.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rustcd_testkit::{Cluster, Server, etcdctl, free_port, http_get, stdout, wait_for, workspace_bin};

/// A rustcd member started with `--discovery`, killed when dropped.
struct Member {
    child: Child,
    client: u16,
    peer: u16,
    log: std::path::PathBuf,
    data_dir: std::path::PathBuf,
}

impl Member {
    fn start(dir: &Path, name: &str, discovery: &str, extra: &[&str]) -> Member {
        let (client, peer) = (free_port(), free_port());
        let log = dir.join(format!("{name}.log"));
        let data_dir = dir.join(format!("{name}.etcd"));
        let bootstrap = if discovery.is_empty() { String::new() } else { format!("--discovery={discovery}") };
        let child = Command::new(workspace_bin("etcd"))
            .args([
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            ])
            .args((!bootstrap.is_empty()).then_some(bootstrap))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn etcd");
        Member { child, client, peer, log, data_dir }
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit, and returns its exit code and log.
    fn exit(&mut self) -> (Option<i32>, String) {
        let status = wait_for("the member to exit", Duration::from_secs(20), || self.child.try_wait().ok().flatten());
        (status.code(), self.log())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PUT of a form value through the v2 keys API.
fn v2_put(port: u16, key: &str, value: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = format!("value={value}");
    write!(
        s,
        "PUT /v2/keys{key} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn run(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn members_discover_each_other_through_a_discovery_url() {
    let service = Cluster::start_with(Server::Etcd, 1, &["--enable-v2"]);
    let port = service.members[0].client_port;
    let said = v2_put(port, "/discovery/tok/_config/size", "3");
    assert!(said.starts_with("HTTP/1.1 201"), "{said}");
    let url = format!("http://127.0.0.1:{port}/v2/keys/discovery/tok");
    let dir = tempfile::tempdir().expect("dir");

    let members: Vec<Member> = ["a", "b", "c"].iter().map(|n| Member::start(dir.path(), n, &url, &[])).collect();
    for m in &members {
        wait_for("the discovered cluster to take a write", Duration::from_secs(30), || {
            etcdctl(&[&m.endpoint()], &["put", "k", "v"]).status.success().then_some(())
        });
    }
    let list = run(&etcdctl(&[&members[0].endpoint()], &["member", "list"]));
    for name in ["a", "b", "c"] {
        assert!(list.contains(&format!(", started, {name}, http://127.0.0.1:")), "{list}");
    }
    assert_eq!(list.lines().count(), 3, "{list}");
    let log = members[0].log();
    assert!(log.contains("found all needed peers from discovery server"), "{log}");
    // The registrations are etcd's: under each member's ID (hex), its `name=peer URL`.
    let registered = http_get(port, "/v2/keys/discovery/tok");
    let ids = stdout(&etcdctl(&[&members[0].endpoint()], &["member", "list"]));
    for line in ids.lines() {
        let (id, rest) = line.split_once(", started, ").expect("a member line");
        let (name, peer) = rest.split_once(", ").expect("name and peer URL");
        let peer = peer.split(',').next().expect("peer URL");
        let node = format!(r#""key":"/discovery/tok/{id}","value":"{name}={peer}""#);
        assert!(registered.contains(&node), "{node} in {registered}");
    }

    // A fourth member finds the cluster full: with --discovery-fallback=exit it exits with
    // etcd's error; with the default (etcd's v2 proxy, which rustcd lacks) it says so.
    let mut late = Member::start(dir.path(), "d", &url, &["--discovery-fallback=exit"]);
    let (code, log) = late.exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("discovery: cluster is full"), "{log}");
    // With the default fallback it becomes etcd's HTTP proxy to the discovered cluster.
    let proxy = Member::start(dir.path(), "e", &url, &[]);
    let version = wait_for("the proxy to forward", Duration::from_secs(20), || {
        let r = http_request(proxy.client, "GET", "/version", "");
        r.starts_with("HTTP/1.1 200").then_some(r)
    });
    assert!(version.contains(r#""etcdserver":"#), "{version}");
    assert!(proxy.log().contains("discovery cluster is full, falling back to proxy"), "{}", proxy.log());
    assert!(!proxy.data_dir.join("member").exists(), "no member data stays behind");
    let file = std::fs::read_to_string(proxy.data_dir.join("proxy/cluster")).expect("the proxy's cluster file");
    assert_eq!(file.matches("http://127.0.0.1:").count(), 3, "{file}");

    // A token nobody gave a size.
    let mut lost = Member::start(dir.path(), "f", &format!("http://127.0.0.1:{port}/v2/keys/discovery/nosize"), &[]);
    let (code, log) = lost.exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("discovery: size key not found"), "{log}");

    // A discovery URL beside --initial-cluster is refused before anything starts.
    let mut both = Member::start(dir.path(), "g", &url, &["--initial-cluster=g=http://127.0.0.1:1"]);
    let (code, log) = both.exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("multiple discovery or bootstrap flags are set"), "{log}");

    // `--proxy=readonly` from `--initial-cluster`: one peer is enough to learn every member's
    // client URL; GETs are forwarded, other methods get 501; a member gone is skipped.
    let peer = format!("--initial-cluster=a=http://127.0.0.1:{}", members[0].peer);
    let ro = Member::start(dir.path(), "ro", "", &["--proxy=readonly", &peer, "--proxy-failure-wait=60000"]);
    wait_for("the readonly proxy to forward", Duration::from_secs(20), || {
        http_request(ro.client, "GET", "/health", "").starts_with("HTTP/1.1 200").then_some(())
    });
    let posted = http_request(ro.client, "POST", "/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#);
    assert!(posted.starts_with("HTTP/1.1 501"), "{posted}");
    drop(members);
    let gone = http_get(ro.client, "/version");
    assert!(gone.starts_with("HTTP/1.1 502"), "every member is gone: {gone}");
    assert!(gone.contains("proxy: unable to get response from 3 endpoint(s)"), "{gone}");
    let held_out = http_get(ro.client, "/version");
    assert!(held_out.contains("proxy: zero endpoints currently available"), "{held_out}");
}

/// An HTTP/1.1 request with a body on loopback: the whole response.
fn http_request(port: u16, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    // Not listening yet reads as no answer.
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}
