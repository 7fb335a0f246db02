//! TLS as etcd deployments run it: a 3-member cluster with client and peer TLS, client
//! certificates required on both, certificates made by the test (`rustcd_testkit::certs`). The
//! real etcdctl with the CA and a client certificate reads and writes; every client without a
//! valid certificate is refused (none, another CA's, a revoked one, plaintext), and so is every
//! process that speaks to a peer port without a member's certificate: not one raft message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rustcd_testkit::certs::{Pair, Pki};
use rustcd_testkit::{REAL_ETCDCTL, free_port, stdout, wait_for, workspace_bin};

struct Member {
    child: Child,
    log: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS cluster of `n` members (client certificates required on client and peer ports).
struct TlsCluster {
    members: Vec<Member>,
    clients: Vec<u16>,
    peers: Vec<u16>,
}

/// `extra(i)`: member `i`'s flags besides the URLs and kubeadm's TLS flags.
fn start_cluster(dir: &Path, pki: &mut Pki, n: usize, extra: &dyn Fn(usize) -> Vec<String>) -> TlsCluster {
    let clients: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let peers: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let initial: Vec<String> = (0..n).map(|i| format!("m{i}=https://127.0.0.1:{}", peers[i])).collect();
    let server = pki.issue("member", "member");
    let ca = pki.ca.display().to_string();
    let mut members = Vec::new();
    for i in 0..n {
        let log = dir.join(format!("m{i}.log"));
        let mut args: Vec<String> = vec![
            format!("--name=m{i}"),
            format!("--data-dir={}", dir.join(format!("m{i}.etcd")).display()),
            format!("--listen-client-urls=https://127.0.0.1:{}", clients[i]),
            format!("--advertise-client-urls=https://127.0.0.1:{}", clients[i]),
            format!("--listen-peer-urls=https://127.0.0.1:{}", peers[i]),
            format!("--initial-advertise-peer-urls=https://127.0.0.1:{}", peers[i]),
            format!("--initial-cluster={}", initial.join(",")),
            format!("--cert-file={}", server.cert.display()),
            format!("--key-file={}", server.key.display()),
            format!("--trusted-ca-file={ca}"),
            "--client-cert-auth".into(),
            format!("--peer-cert-file={}", server.cert.display()),
            format!("--peer-key-file={}", server.key.display()),
            format!("--peer-trusted-ca-file={ca}"),
            "--peer-client-cert-auth".into(),
        ];
        args.extend(extra(i));
        let child = Command::new(workspace_bin("etcd"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn etcd");
        members.push(Member { child, log });
    }
    TlsCluster { members, clients, peers }
}

impl TlsCluster {
    fn endpoints(&self) -> String {
        self.clients.iter().map(|p| format!("https://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    fn logs(&self) -> String {
        self.members.iter().map(|m| std::fs::read_to_string(&m.log).unwrap_or_default()).collect::<Vec<_>>().join("\n")
    }
}

/// The real etcdctl with `tls` flags.
fn etcdctl(endpoints: &str, tls: &[String], args: &[&str]) -> Output {
    Command::new(REAL_ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=3s")
        .args(tls)
        .args(args)
        .output()
        .expect("run etcdctl")
}

fn with_cert(ca: &Path, pair: &Pair) -> Vec<String> {
    vec![
        format!("--cacert={}", ca.display()),
        format!("--cert={}", pair.cert.display()),
        format!("--key={}", pair.key.display()),
    ]
}

#[test]
fn a_tls_cluster_serves_only_clients_with_valid_certificates() {
    let dir = tempfile::tempdir().expect("dir");
    let mut pki = Pki::new(dir.path());
    let client = pki.issue("client", "root");
    let stranger = pki.stranger("stranger", "root");
    let (revoked, crl) = pki.revoked("revoked", "root");
    let crl_flag = format!("--client-crl-file={}", crl.display());
    let c = start_cluster(dir.path(), &mut pki, 3, &|_| vec![crl_flag.clone()]);
    let ok = with_cert(&pki.ca, &client);
    let eps = c.endpoints();
    wait_for("the TLS cluster takes a write", Duration::from_secs(30), || {
        etcdctl(&eps, &ok, &["put", "secret", "v1"]).status.success().then_some(())
    });
    assert_eq!(stdout(&etcdctl(&eps, &ok, &["get", "secret", "--print-value-only"])), "v1\n", "{}", c.logs());
    let table = stdout(&etcdctl(&eps, &ok, &["endpoint", "status", "-w", "table"]));
    assert_eq!(table.matches("https://127.0.0.1:").count(), 3, "every member answers over TLS:\n{table}");

    let ca_only = vec![format!("--cacert={}", pki.ca.display())];
    let attempts: Vec<(&str, Vec<String>, String)> = vec![
        ("no client certificate", ca_only, eps.clone()),
        ("another CA's certificate", with_cert(&pki.ca, &stranger), eps.clone()),
        ("a revoked certificate", with_cert(&pki.ca, &revoked), eps.clone()),
        ("plaintext to the TLS port", vec![], eps.replace("https://", "http://")),
        ("a server not checked against the CA", with_cert(&stranger.cert, &client), eps.clone()),
    ];
    for (what, tls, endpoints) in attempts {
        for args in [&["put", "secret", "stolen"][..], &["get", "secret"][..]] {
            let out = etcdctl(&endpoints, &tls, args);
            assert!(!out.status.success(), "{what}: {args:?} must be refused: {}", stdout(&out));
            assert!(!stdout(&out).contains("v1"), "{what}: nothing is read");
        }
    }
    assert_eq!(stdout(&etcdctl(&eps, &ok, &["get", "secret", "--print-value-only"])), "v1\n", "nothing was written");
    let logs = c.logs();
    assert!(logs.contains("serving client traffic securely"), "the member says it serves securely");
    assert!(logs.contains("rejected connection"), "refused handshakes are logged");
}

/// The peer port: raft messages from a process without a member certificate never arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_port_takes_no_raft_message_without_a_member_certificate() {
    use rustcd_peer::rafthttp::client;
    let dir = tempfile::tempdir().expect("dir");
    let mut pki = Pki::new(dir.path());
    let client = pki.issue("client", "root");
    let stranger = pki.stranger("stranger", "member");
    let wrong_cn = pki.issue("intruder", "intruder");
    let c = start_cluster(dir.path(), &mut pki, 3, &|_| vec!["--peer-cert-allowed-cn=member".to_string()]);
    let ok = with_cert(&pki.ca, &client);
    let eps = c.endpoints();
    wait_for("the TLS cluster takes a write", Duration::from_secs(30), || {
        etcdctl(&eps, &ok, &["put", "k", "v"]).status.success().then_some(())
    });
    let peer = format!("127.0.0.1:{}", c.peers[0]);
    let info = |pair: Option<&Pair>| rustcd_tls::TlsInfo {
        cert_file: pair.map(|p| p.cert.display().to_string()).unwrap_or_default(),
        key_file: pair.map(|p| p.key.display().to_string()).unwrap_or_default(),
        trusted_ca_file: pki.ca.display().to_string(),
        ..Default::default()
    };
    let attempts = [
        ("plaintext", format!("http://{peer}"), None),
        ("TLS without a certificate", format!("https://{peer}"), Some(info(None))),
        ("another CA's certificate", format!("https://{peer}"), Some(info(Some(&stranger)))),
        ("the CA's certificate with another CN", format!("https://{peer}"), Some(info(Some(&wrong_cn)))),
    ];
    for (what, url, tls) in attempts {
        let cfg = tls.map(|t| t.client_config().expect("client TLS"));
        // Any answer at all, even a refusal, would mean the connection got past TLS.
        let local = rustcd_peer::Local { id: 1, cluster_id: 0, peer_urls: vec![], server_version: "3.5.13" };
        let req = client::request(&url, "POST", "/raft", Some(&local), vec![0u8; 8].into()).expect("request");
        let answered = client::send(&url, cfg.as_ref(), Duration::from_secs(2), req).await;
        assert!(answered.is_err(), "{what}: the peer port answered a raft message: {:?}", answered.map(|r| r.status()));
    }
    // A member's certificate is what the members themselves use: the cluster is whole.
    let table = stdout(&etcdctl(&eps, &ok, &["endpoint", "status", "-w", "table"]));
    assert_eq!(table.matches("https://127.0.0.1:").count(), 3, "{table}");
}

/// kubeadm's flag list for a stacked control plane's etcd, TLS files included (made here),
/// starts a 3-member cluster with no warning; the real etcdctl with the CA and a client
/// certificate reads and writes, and the plaintext metrics URL answers `/health`.
#[test]
fn kubeadm_flags_with_their_tls_files_start_a_3_member_cluster() {
    let dir = tempfile::tempdir().expect("dir");
    let mut pki = Pki::new(dir.path());
    let client = pki.issue("apiserver-etcd-client", "kube-apiserver-etcd-client");
    let metrics: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let c = start_cluster(dir.path(), &mut pki, 3, &|i| {
        vec![
            "--client-cert-auth=true".into(),
            "--peer-client-cert-auth=true".into(),
            "--experimental-initial-corrupt-check=true".into(),
            "--experimental-watch-progress-notify-interval=5s".into(),
            format!("--listen-metrics-urls=http://127.0.0.1:{}", metrics[i]),
            "--snapshot-count=10000".into(),
        ]
    });
    let ok = with_cert(&pki.ca, &client);
    let eps = c.endpoints();
    wait_for("the kubeadm-flagged cluster takes a write", Duration::from_secs(30), || {
        etcdctl(&eps, &ok, &["put", "/registry/ns/default", "x"]).status.success().then_some(())
    });
    assert_eq!(stdout(&etcdctl(&eps, &ok, &["get", "/registry/ns/default", "--print-value-only"])), "x\n");
    let health = rustcd_testkit::http_get(metrics[0], "/health");
    assert!(health.contains(r#""health":"true""#), "{health}");
    let logs = c.logs();
    assert!(!logs.contains("has no effect") && !logs.contains("ignoring"), "no flag is ignored:\n{logs}");
    assert!(logs.contains("serving client traffic securely"));
}

/// etcd's check of a peer's client certificate against the address it connects from: a
/// certificate the CA signed for another host is refused on the peer port, unless
/// `--experimental-peer-skip-client-san-verification` is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_certificate_must_name_the_address_it_connects_from() {
    for skip in [false, true] {
        let dir = tempfile::tempdir().expect("dir");
        let mut pki = Pki::new(dir.path());
        let client = pki.issue("client", "root");
        let elsewhere = pki.issue_for("elsewhere", "member", &["10.9.9.9", "elsewhere.invalid"]);
        let flags = if skip { vec!["--experimental-peer-skip-client-san-verification".to_string()] } else { vec![] };
        let c = start_cluster(dir.path(), &mut pki, 1, &|_| flags.clone());
        let (ok, eps) = (with_cert(&pki.ca, &client), c.endpoints());
        wait_for("the member takes a write", Duration::from_secs(30), || {
            etcdctl(&eps, &ok, &["put", "k", "v"]).status.success().then_some(())
        });
        let info = rustcd_tls::TlsInfo {
            cert_file: elsewhere.cert.display().to_string(),
            key_file: elsewhere.key.display().to_string(),
            trusted_ca_file: pki.ca.display().to_string(),
            ..Default::default()
        };
        let cfg = info.client_config().expect("client TLS");
        let url = format!("https://127.0.0.1:{}", c.peers[0]);
        let urls = [url];
        let answered = rustcd_peer::rafthttp::client::members(&urls, Some(&cfg), Duration::from_secs(2)).await.is_ok();
        assert_eq!(answered, skip, "skip-client-san-verification={skip}: the peer port answered {answered}");
    }
}

/// The seed's walkthrough on a TLS cluster with client certificates and auth on, driven by the
/// real etcdctl: a certificate's common name is its user (etcd's CN auth), so the `root`
/// certificate puts, watches and deletes; a certificate naming no user is refused; a user's
/// password works beside any valid certificate; the status table shows one leader, and killing
/// it gives a new one.
#[test]
fn the_walkthrough_on_a_tls_cluster_with_auth_on() {
    let dir = tempfile::tempdir().expect("dir");
    let mut pki = Pki::new(dir.path());
    let (root, nobody) = (pki.issue("root-client", "root"), pki.issue("nobody-client", "nobody"));
    let mut c = start_cluster(dir.path(), &mut pki, 3, &|_| vec![]);
    let eps = c.endpoints();
    let as_root = with_cert(&pki.ca, &root);
    let as_nobody = with_cert(&pki.ca, &nobody);
    wait_for("the TLS cluster to take a write", Duration::from_secs(30), || {
        etcdctl(&eps, &as_root, &["put", "probe", "1"]).status.success().then_some(())
    });
    for args in [&["user", "add", "root:rootpw"][..], &["user", "grant-role", "root", "root"], &["auth", "enable"]] {
        let out = etcdctl(&eps, &as_root, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Part C as root, named by its certificate.
    assert_eq!(stdout(&etcdctl(&eps, &as_root, &["put", "srn", "pes1ug21csxxx"])), "OK\n");
    assert_eq!(stdout(&etcdctl(&eps, &as_root, &["get", "srn"])), "srn\npes1ug21csxxx\n");
    let first = format!("https://127.0.0.1:{}", c.clients[0]);
    let mut watch = Command::new(REAL_ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={first}"))
        .args(&as_root)
        .args(["watch", "srn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    // The watch is open once a put made after it starts shows up in it: put until one does.
    let out = watch.stdout.take().expect("watch output");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            seen.lock().expect("lines").push(l);
        }
    });
    wait_for("the watch to see a put", Duration::from_secs(20), || {
        etcdctl(&eps, &as_root, &["put", "srn", "pes1ug21csxxx_your_name"]);
        lines.lock().expect("lines").iter().any(|l| l == "pes1ug21csxxx_your_name").then_some(())
    });
    assert_eq!(stdout(&etcdctl(&eps, &as_root, &["del", "srn"])), "1\n");
    wait_for("the watch to see the delete", Duration::from_secs(10), || {
        lines.lock().expect("lines").iter().any(|l| l == "DELETE").then_some(())
    });
    let _ = watch.kill();
    let _ = watch.wait();
    // A certificate naming no user may not write; a user's password works beside it.
    let refused = etcdctl(&eps, &as_nobody, &["put", "srn", "x"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("etcdserver: permission denied"), "{refused:?}");
    let with_password = [as_nobody.clone(), vec!["--user=root:rootpw".into()]].concat();
    assert_eq!(stdout(&etcdctl(&eps, &with_password, &["put", "srn", "by-password"])), "OK\n");
    // Parts D and E: one leader; killing it gives another.
    let table = stdout(&etcdctl(&eps, &as_root, &["endpoint", "status", "-w", "table"]));
    let rows = rustcd_testkit::parse_status_table(&table);
    assert_eq!(rows.iter().filter(|r| r.2).count(), 1, "one leader: {table}");
    let leader = rows.iter().position(|r| r.2).expect("leader");
    let old_term = rows[0].3;
    let killed = c.members.remove(leader);
    drop(killed);
    let others: Vec<String> =
        (0..3).filter(|i| *i != leader).map(|i| format!("https://127.0.0.1:{}", c.clients[i])).collect();
    let others = others.join(",");
    wait_for("a new leader", Duration::from_secs(15), || {
        let rows = rustcd_testkit::parse_status_table(&stdout(&etcdctl(
            &others,
            &as_root,
            &["endpoint", "status", "-w", "table"],
        )));
        (rows.len() == 2 && rows.iter().filter(|r| r.2).count() == 1 && rows.iter().all(|r| r.3 > old_term))
            .then_some(())
    });
    assert_eq!(stdout(&etcdctl(&others, &as_root, &["get", "srn", "--print-value-only"])), "by-password\n");
}
