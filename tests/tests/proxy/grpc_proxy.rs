//! `etcd grpc-proxy start`, etcd's L7 proxy, in front of a real 3-member cluster: etcdctl
//! through rustcd's proxy prints what it prints through etcd's own grpc-proxy (3.4, Debian's
//! `etcd-server`) in front of the same cluster; watches on one range share one cluster watch
//! and each still gets exactly its events; serializable reads come from the cache until a
//! write through the proxy changes them; a watch survives the loss of the member it was on.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use rustcd_testkit::{Cluster, Ctl, Printed, REAL_ETCD, channel, free_port, http_get, wait_for, workspace_bin};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A grpc-proxy process, killed when dropped.
struct Proxy {
    child: Child,
    port: u16,
    _dir: rustcd_testkit::TempDir,
}

impl Proxy {
    fn start(binary: &std::path::Path, endpoints: &[String]) -> Proxy {
        Self::start_with(binary, endpoints, &[])
    }

    fn start_with(binary: &std::path::Path, endpoints: &[String], extra: &[&str]) -> Proxy {
        Self::start_at(binary, endpoints, free_port(), &extra.join(" "))
    }

    /// On `port`, with `extra` flags (space-separated).
    fn start_at(binary: &std::path::Path, endpoints: &[String], port: u16, extra: &str) -> Proxy {
        let endpoints = endpoints.join(",");
        let dir = tempfile::tempdir().expect("proxy data dir");
        let data_dir = dir.path().join("proxy").display().to_string();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["grpc-proxy", "start", "--endpoints", &endpoints, "--listen-addr", &listen, "--data-dir", &data_dir])
            .args(extra.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn grpc-proxy");
        let p = Proxy { child, port, _dir: dir };
        wait_for("the proxy to serve", Duration::from_secs(20), || {
            Ctl::Real.run(&p.endpoint(), &["endpoint", "status"], None).status.success().then_some(())
        });
        p
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One etcdctl session through a proxy: what each command printed.
fn session(p: &Proxy, tag: &str) -> Vec<Printed> {
    let ep = p.endpoint();
    let run = |args: &[&str]| Printed::of(&Ctl::Real.run(&ep, args, None));
    let key = |k: &str| format!("{tag}/{k}");
    let mut out = vec![
        run(&["put", &key("a"), "1"]),
        run(&["put", &key("b"), "2", "--prev-kv"]),
        run(&["get", &key("a"), "--consistency=s"]),
        run(&["get", &key("a"), "--consistency=s"]),
        run(&["put", &key("a"), "3"]),
        run(&["get", &key("a"), "--consistency=s", "--print-value-only"]),
        run(&["get", &format!("{tag}/"), "--prefix", "--keys-only"]),
        run(&["del", &key("b")]),
        run(&["get", "", "--from-key", "--count-only", "-w", "json"]).shape(),
    ];
    let txn = format!("value(\"{}\") = \"3\"\n\nput {} ok\n\nput {} no\n\n", key("a"), key("t"), key("t"));
    out.push(Printed::of(&Ctl::Real.run(&ep, &["txn"], Some(&txn))));
    out.push(run(&["get", &key("t"), "--print-value-only", "--consistency=s"]));
    out.push(run(&["lease", "grant", "100"]).shape());
    out.push(run(&["lock", &key("lock"), "echo", "locked"]));
    out.push(run(&["member", "list", "-w", "json"]).shape());
    let mut health = run(&["endpoint", "health"]);
    health.stdout = health.stdout.contains("is healthy").to_string();
    out.push(health);
    out.push(rustcd_testkit::etcdctl_watch(&ep, &["watch", &key("a"), "--rev=1"], 6, Duration::from_secs(10)));
    out.push(run(&["lease", "list"]).shape());
    out.push(run(&["compact", "1"]));
    out.push(run(&["get", &key("a"), "--rev=1", "--consistency=s"]));
    out
}

trait Shape {
    fn shape(self) -> Printed;
}

impl Shape for Printed {
    /// Keeps what a run printed up to numbers and hex IDs (they differ between clusters).
    fn shape(mut self) -> Printed {
        let hex_id = |w: &str| w.len() >= 12 && w.chars().all(|c| c.is_ascii_hexdigit());
        let lines: Vec<String> = self
            .stdout
            .split('\n')
            .map(|l| l.split(' ').map(|w| if hex_id(w) { "<id>" } else { w }).collect::<Vec<_>>().join(" "))
            .collect();
        let mut s = String::new();
        for c in lines.join("\n").chars().map(|c| if c.is_ascii_digit() { '9' } else { c }) {
            if !(c == '9' && s.ends_with('9')) {
                s.push(c);
            }
        }
        self.stdout = s;
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_through_our_proxy_prints_what_it_prints_through_etcds() {
    let c = Cluster::start(3);
    c.wait_writable(0);
    let theirs = Proxy::start(std::path::Path::new(REAL_ETCD), &c.endpoints());
    let expected = session(&theirs, "s");
    drop(theirs);
    let c2 = Cluster::start(3);
    c2.wait_writable(0);
    let ours = Proxy::start(&workspace_bin("etcd"), &c2.endpoints());
    let got = session(&ours, "s");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "step {i} through rustcd's proxy vs etcd's");
    }
    assert_eq!(got.len(), expected.len());
    let metrics = http_get(ours.port, "/metrics");
    assert!(metrics.contains("etcd_grpc_proxy_cache_hits_total"), "{metrics}");
    assert!(http_get(ours.port, "/health").contains(r#"{"health":"true""#));
}

fn watch_from(key: &str, start: i64) -> WatchRequest {
    let create =
        WatchCreateRequest { key: key.as_bytes().to_vec().into(), start_revision: start, ..Default::default() };
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }
}

/// Opens a watch stream; the request sender must live as long as the watch.
async fn open_watch(
    endpoint: &str,
    req: WatchRequest,
) -> (mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(req).await.expect("queue the create request");
    let mut s =
        WatchClient::new(channel(endpoint).await).watch(ReceiverStream::new(rx)).await.expect("watch").into_inner();
    let created = s.message().await.expect("created").expect("a response");
    assert!(created.created, "the first response says created: {created:?}");
    (tx, s)
}

/// The revisions of the events a watch receives until it has `n` (or the deadline passes).
async fn revisions(s: &mut tonic::Streaming<WatchResponse>, n: usize) -> Vec<i64> {
    let mut revs = Vec::new();
    while revs.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), s.message()).await {
            Ok(Ok(Some(m))) => revs.extend(m.events.iter().filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))),
            _ => break,
        }
    }
    revs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_share_one_cluster_watch_and_survive_a_member_loss() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    // The proxy knows member 1 alone: when it goes, every cluster watch breaks and must resume
    // once it is back, from where it was.
    let p = Proxy::start(&workspace_bin("etcd"), &[c.members[1].endpoint()]);
    let ep = p.endpoint();
    let mut kv = KvClient::new(channel(&c.members[0].endpoint()).await);
    let put = |v: String| PutRequest { key: b"w".to_vec().into(), value: v.into_bytes().into(), ..Default::default() };
    let first = kv.put(put("0".into())).await.expect("put").into_inner().header.expect("header").revision;

    // 50 watches "from now" and 10 from the first revision, on one key.
    let mut watches = Vec::new();
    for i in 0..60 {
        watches.push(open_watch(&ep, watch_from("w", if i < 50 { 0 } else { first })).await);
    }
    let metrics = http_get(p.port, "/metrics");
    let shared: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("etcd_grpc_proxy_watchers_coalescing_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the coalescing gauge");
    assert!(shared >= 50, "most watches share a cluster watch ({shared} of 60):\n{metrics}");

    // Writes go on through member 0 while member 1 is down (if member 1 led, a put may time
    // out during the election: it is tried again, and the newest revision is what counts).
    let writer = tokio::spawn(async move {
        let mut last = 0;
        for i in 1..=200 {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let rev = loop {
                match kv.put(put(i.to_string())).await {
                    Ok(r) => break r.into_inner().header.map_or(0, |h| h.revision),
                    Err(e) if std::time::Instant::now() < deadline => eprintln!("put {i}: {e:?}; again"),
                    Err(e) => panic!("put {i} never went through: {e:?}"),
                }
            };
            last = last.max(rev);
            if i == 50 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        last
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.kill(1, libc::SIGKILL);
    let last = writer.await.expect("writer");
    assert!(last >= first + 200, "every write went through member 0");
    c.restart(1);

    let from_now_expected: usize = (last - first) as usize;
    for (i, (_tx, s)) in watches.iter_mut().enumerate() {
        let (want, from) = if i < 50 { (from_now_expected, first + 1) } else { (from_now_expected + 1, first) };
        let revs = revisions(s, want).await;
        let expected: Vec<i64> = (from..=last).collect();
        assert_eq!(revs, expected, "watch {i} saw every revision once, in order");
    }
    // Cached serializable reads, kept current by writes through the proxy.
    let mut pkv = KvClient::new(channel(&ep).await);
    let get = RangeRequest { key: b"w".to_vec().into(), serializable: true, ..Default::default() };
    let value = |r: rustcd_api::etcdserverpb::RangeResponse| r.kvs.first().map(|kv| kv.value.to_vec());
    let a = value(pkv.range(get.clone()).await.expect("get").into_inner());
    let b = value(pkv.range(get.clone()).await.expect("get").into_inner());
    assert_eq!(a, b);
    let hits = http_get(p.port, "/metrics");
    assert!(!hits.contains("etcd_grpc_proxy_cache_hits_total 0\n"), "the second read was a hit:\n{hits}");
    pkv.put(put("through-proxy".into())).await.expect("put through the proxy");
    let after = value(pkv.range(get).await.expect("get").into_inner());
    assert_eq!(after, Some(b"through-proxy".to_vec()), "a write through the proxy drops the cached read");
}

/// `--namespace`: the same session through both proxies, each keeping its clients under `ns/`;
/// the cluster holds the keys with the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_proxy_acts_as_etcds() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let theirs = Proxy::start_with(std::path::Path::new(REAL_ETCD), &c.endpoints(), &["--namespace=ns/"]);
    let expected = session(&theirs, "s");
    drop(theirs);
    let c2 = Cluster::start(1);
    c2.wait_writable(0);
    let ours = Proxy::start_with(&workspace_bin("etcd"), &c2.endpoints(), &["--namespace=ns/"]);
    let got = session(&ours, "s");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "step {i} through rustcd's namespaced proxy vs etcd's");
    }
    assert_eq!(got.len(), expected.len());
    let direct = Ctl::Real.run(&c2.members[0].endpoint(), &["get", "ns/s/a", "--print-value-only"], None);
    assert_eq!(rustcd_testkit::stdout(&direct), "3\n", "the cluster holds the key under the namespace");
}

/// `--resolver-prefix`: rustcd's proxy and etcd's register under one prefix in the same record
/// form, and each lists both as the members. `--endpoints-auto-sync-interval`: a proxy given
/// one member finds the others in the member list and goes on when that member is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_register_under_a_prefix_and_sync_endpoints() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    let register = |port: u16| {
        vec![
            "--resolver-prefix=/proxies".to_string(),
            "--resolver-ttl=10".into(),
            format!("--advertise-client-url=127.0.0.1:{port}"),
        ]
    };
    let (p1, p2) = (free_port(), free_port());
    let args = |v: &Vec<String>| v.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    let (a1, a2) = (register(p1), register(p2));
    let theirs = Proxy::start_at(std::path::Path::new(REAL_ETCD), &c.endpoints(), p1, &args(&a1));
    let ours = Proxy::start_at(
        &workspace_bin("etcd"),
        &[c.members[0].endpoint()],
        p2,
        &format!("{} --endpoints-auto-sync-interval=300ms", args(&a2)),
    );
    let records = wait_for("both proxies registered", Duration::from_secs(20), || {
        let out =
            Ctl::Real.run(&c.members[1].endpoint(), &["get", "/proxies/", "--prefix", "--print-value-only"], None);
        let text = rustcd_testkit::stdout(&out);
        (text.lines().count() == 2).then_some(text)
    });
    let shapes: Vec<String> =
        records.lines().map(|l| l.replace(&p1.to_string(), "P").replace(&p2.to_string(), "P")).collect();
    assert_eq!(shapes[0], shapes[1], "one record form: {records}");
    for p in [&theirs, &ours] {
        let list = rustcd_testkit::stdout(&Ctl::Real.run(&p.endpoint(), &["member", "list"], None));
        for port in [p1, p2] {
            assert!(
                list.contains(&format!(", 127.0.0.1:{port}, false")),
                "{} lists proxy {port}:\n{list}",
                p.endpoint()
            );
        }
    }
    // Let a sync round see the member list, then take away the one member ours was given.
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.kill(0, libc::SIGKILL);
    wait_for("a write through the synced proxy", Duration::from_secs(20), || {
        Ctl::Real.run(&ours.endpoint(), &["put", "after", "sync"], None).status.success().then_some(())
    });
    drop(theirs);
}

/// The revisions of serializable reads of 20 different keys (no two alike, so none is served
/// from the cache) through `p`; an error is recorded as revision -1.
async fn serializable_revisions(p: &Proxy) -> Vec<i64> {
    let mut kv = KvClient::new(channel(&p.endpoint()).await);
    let mut revs = Vec::new();
    for i in 0..20 {
        let get = RangeRequest { key: format!("o{i}").into_bytes().into(), serializable: true, ..Default::default() };
        match kv.range(get).await {
            Ok(r) => revs.push(r.into_inner().header.map_or(0, |h| h.revision)),
            Err(e) => {
                assert!(e.message().contains("no cluster members have a revision higher"), "{e:?}");
                revs.push(-1);
            }
        }
    }
    revs
}

/// `--experimental-serializable-ordering`: behind the proxy, one member is cut off from its
/// peers and answers serializable reads from its old revision. Without ordering the proxy
/// hands some of those out after newer ones; with it, never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_ordering_never_goes_back_in_revisions() {
    let c = Cluster::start_proxied(3, &[]);
    c.wait_writable(0);
    let leader = wait_for("a leader", Duration::from_secs(10), || rustcd_testkit::leader_index(&c));
    let cut = (leader + 1) % 3;
    c.proxies[cut].set(rustcd_testkit::proxy::Fault::Blackhole);
    let mut kv = KvClient::new(channel(&c.members[leader].endpoint()).await);
    for i in 0..5 {
        let put = PutRequest { key: format!("w{i}").into_bytes().into(), ..Default::default() };
        kv.put(put).await.expect("put");
    }
    let endpoints = [c.members[leader].endpoint(), c.members[cut].endpoint()];
    let plain = Proxy::start(&workspace_bin("etcd"), &endpoints);
    let revs = serializable_revisions(&plain).await;
    assert!(revs.windows(2).any(|w| w[1] < w[0]), "without ordering some answer is older: {revs:?}");
    let ordered = Proxy::start_with(&workspace_bin("etcd"), &endpoints, &["--experimental-serializable-ordering"]);
    let revs: Vec<i64> = serializable_revisions(&ordered).await.into_iter().filter(|r| *r >= 0).collect();
    assert!(revs.windows(2).all(|w| w[1] >= w[0]), "with ordering never older: {revs:?}");
    assert!(!revs.is_empty(), "some reads were answered");
}

/// The proxy's client side with TLS (`--auto-tls`): etcdctl reaches the cluster through it over
/// TLS, and plaintext to it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_serves_its_clients_over_tls() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let data = format!("--data-dir={}", dir.path().join("proxy").display());
    let child = Command::new(workspace_bin("etcd"))
        .args(["grpc-proxy", "start", "--auto-tls", &data, "--endpoints", &c.members[0].endpoint()])
        .args(["--listen-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn grpc-proxy");
    // Killed when dropped, the test passing or not.
    let _proxy = Proxy { child, port, _dir: dir };
    let secure = format!("https://127.0.0.1:{port}");
    let ok = wait_for("a write over TLS through the proxy", Duration::from_secs(20), || {
        let out = Ctl::Real.run(
            &secure,
            &["--insecure-transport=false", "--insecure-skip-tls-verify", "put", "tls", "yes"],
            None,
        );
        out.status.success().then_some(out)
    });
    assert!(ok.status.success());
    let plain = Ctl::Real.run(&format!("127.0.0.1:{port}"), &["get", "tls", "--dial-timeout=1s"], None);
    assert!(!plain.status.success(), "plaintext to a TLS proxy is refused");
}

/// TLS to the cluster (`--cacert`, `--cert`, `--key`): the proxy reaches members that take only
/// clients with a certificate their CA signed; a certificate with a common name is refused at
/// start, as etcd refuses it (with CN auth on, every request would act as that user).
#[test]
fn a_proxy_reaches_a_tls_cluster_with_its_client_certificate() {
    let mut c = Cluster::start_tls(rustcd_testkit::Server::Rustcd, 1, &[]);
    let pki = c.pki.as_mut().expect("the cluster's CA");
    let (anonymous, named) = (pki.issue("proxy", ""), pki.issue("named", "someone"));
    let ca = pki.ca.display().to_string();
    let endpoint = format!("https://127.0.0.1:{}", c.members[0].client_port);
    let tls = |pair: &rustcd_testkit::certs::Pair| {
        format!("--cacert={ca} --cert={} --key={}", pair.cert.display(), pair.key.display())
    };
    let p = Proxy::start_at(&workspace_bin("etcd"), std::slice::from_ref(&endpoint), free_port(), &tls(&anonymous));
    let ep = p.endpoint();
    let put = Ctl::Real.run(&ep, &["put", "through", "tls"], None);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let got = Ctl::Real.run(&ep, &["get", "through", "--print-value-only"], None);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "tls\n");

    // --insecure-skip-tls-verify: no CA, the member's certificate unchecked (tests only).
    let skip =
        format!("--insecure-skip-tls-verify --cert={} --key={}", anonymous.cert.display(), anonymous.key.display());
    let unchecked = Proxy::start_at(&workspace_bin("etcd"), std::slice::from_ref(&endpoint), free_port(), &skip);
    let got = Ctl::Real.run(&unchecked.endpoint(), &["get", "through", "--print-value-only"], None);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "tls\n");

    let out = Command::new(workspace_bin("etcd"))
        .args(["grpc-proxy", "start", "--endpoints", &endpoint, "--listen-addr", &format!("127.0.0.1:{}", free_port())])
        .args(tls(&named).split_whitespace())
        .output()
        .expect("run grpc-proxy");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cert has non empty Common Name"));
}

/// `--experimental-leasing-prefix`: etcd's own grpc-proxy (3.4) caches a key it read by holding
/// `<prefix><key>`; a write that skips the leasing protocol leaves its cache stale (shown here,
/// as etcd documents), while every write through rustcd's proxy with the same prefix (a put, a
/// delete, a range of deletes, a txn) first gets the key given up, so etcd's proxy serves the
/// new value.
#[test]
fn writes_through_our_leasing_proxy_reach_etcds_leasing_cache() {
    let c = Cluster::start(1);
    let leasing = ["--experimental-leasing-prefix=/lease/"];
    let theirs = Proxy::start_with(std::path::Path::new(REAL_ETCD), &c.endpoints(), &leasing);
    let ours = Proxy::start_with(&workspace_bin("etcd"), &c.endpoints(), &leasing);
    let run = |ep: &str, args: &[&str], stdin: Option<&str>| {
        let out = Ctl::Real.run(ep, args, stdin);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let get = |p: &Proxy, k: &str| run(&p.endpoint(), &["get", k, "--print-value-only"], None);
    let put = |ep: &str, k: &str, v: &str| run(ep, &["put", k, v], None);
    let member = c.members[0].endpoint();

    put(&theirs.endpoint(), "k", "v1");
    assert_eq!(get(&theirs, "k"), "v1");
    assert_eq!(run(&member, &["get", "/lease/k", "--keys-only"], None), "/lease/k", "etcd's proxy holds the key");
    put(&member, "k", "direct");
    assert_eq!(get(&theirs, "k"), "v1", "a write outside the protocol is not seen: the cache is live");

    put(&ours.endpoint(), "k", "v2");
    assert_eq!(get(&theirs, "k"), "v2", "after our put");

    run(&ours.endpoint(), &["del", "k"], None);
    assert_eq!(get(&theirs, "k"), "", "after our delete");

    for k in ["r/1", "r/2"] {
        put(&theirs.endpoint(), k, "x");
        assert_eq!(get(&theirs, k), "x");
    }
    assert_eq!(run(&ours.endpoint(), &["del", "r/", "--prefix"], None), "2");
    assert_eq!((get(&theirs, "r/1"), get(&theirs, "r/2")), (String::new(), String::new()), "after our range delete");

    put(&theirs.endpoint(), "t", "before");
    assert_eq!(get(&theirs, "t"), "before");
    let said = run(&ours.endpoint(), &["txn"], Some("value(\"t\") = \"before\"\n\nput t after\n\n\n"));
    assert!(said.starts_with("SUCCESS"), "{said}");
    assert_eq!(get(&theirs, "t"), "after", "after our txn");
}

/// With auth on, a watch through the proxy runs with its client's token: a user may watch what
/// it may read, and is refused what it may not, as it is by the member itself.
#[test]
fn watches_through_the_proxy_carry_their_clients_auth() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let member = c.members[0].endpoint();
    let run = |ep: &str, args: &[&str]| Ctl::Real.run(ep, args, None);
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "u:upw"],
        &["role", "add", "r"],
        &["role", "grant-permission", "r", "read", "a"],
        &["user", "grant-role", "u", "r"],
        &["auth", "enable"],
    ] {
        assert!(run(&member, args).status.success(), "{args:?}");
    }
    let p = Proxy::start_with(&workspace_bin("etcd"), &c.endpoints(), &[]);
    let ep = p.endpoint();
    let denied_direct =
        rustcd_testkit::ctl_watch(Ctl::Real, &member, &["watch", "b", "--user=u:upw"], 1, Duration::from_secs(5));
    let denied = rustcd_testkit::ctl_watch(Ctl::Real, &ep, &["watch", "b", "--user=u:upw"], 1, Duration::from_secs(5));
    assert_eq!(denied, denied_direct, "refused through the proxy as by the member");
    assert!(!denied.errors.is_empty() || denied.code != Some(0), "{denied:?}");
    let watcher = std::thread::spawn({
        let ep = ep.clone();
        move || rustcd_testkit::ctl_watch(Ctl::Real, &ep, &["watch", "a", "--user=u:upw"], 3, Duration::from_secs(15))
    });
    wait_for("the allowed watch to see a put", Duration::from_secs(15), || {
        run(&member, &["put", "a", "1", "--user=root:rootpw"]);
        watcher.is_finished().then_some(())
    });
    let seen = watcher.join().expect("watch");
    assert_eq!(seen.stdout.lines().take(3).collect::<Vec<_>>(), ["PUT", "a", "1"], "{seen:?}");
}
