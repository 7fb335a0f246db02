//! Starting `etcd` the ways deployments start etcd: kubeadm's static-pod flags, a config file
//! holding every etcd 3.5 key, Go-style flag errors, settings refused until they are built,
//! unknown `ETCD_*` variables, and the log lines tools wait for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rustcd_testkit::{etcdctl, free_port, http_get, stdout, wait_for, workspace_bin};

/// A member process, killed when dropped; its stderr goes to `log`.
struct Member {
    child: Child,
    log: PathBuf,
}

impl Member {
    fn start(dir: &Path, args: &[String], env: &[(&str, &str)]) -> Member {
        let log = dir.join("etcd.log");
        let child = Command::new(workspace_bin("etcd"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn etcd");
        Member { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_writable(&mut self, client: u16) {
        let ep = format!("127.0.0.1:{client}");
        wait_for("the member to take a write", Duration::from_secs(30), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("etcd exited with {status}: {}", self.log());
            }
            etcdctl(&[&ep], &["put", "k", "v"]).status.success().then_some(())
        });
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_etcd(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("dir");
    Command::new(workspace_bin("etcd")).args(args).current_dir(dir.path()).output().expect("run etcd")
}

/// The flags kubeadm writes into its etcd static pod for a stacked control plane (its TLS
/// files aside, until TLS is built): they start a member, the metrics URL serves `/health`,
/// and the log has the lines etcd's tools wait for.
#[test]
fn kubeadm_manifest_flags_start_a_member() {
    let dir = tempfile::tempdir().expect("dir");
    let (c, p, m) = (free_port(), free_port(), free_port());
    let args: Vec<String> = [
        format!("--advertise-client-urls=http://127.0.0.1:{c}"),
        format!("--data-dir={}/etcd", dir.path().display()),
        "--experimental-initial-corrupt-check=true".into(),
        "--experimental-watch-progress-notify-interval=5s".into(),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
        format!("--initial-cluster=node1=http://127.0.0.1:{p}"),
        format!("--listen-client-urls=http://127.0.0.1:{c}"),
        format!("--listen-metrics-urls=http://127.0.0.1:{m}"),
        format!("--listen-peer-urls=http://127.0.0.1:{p}"),
        "--name=node1".into(),
        "--snapshot-count=10000".into(),
    ]
    .into();
    let mut member = Member::start(dir.path(), &args, &[]);
    member.wait_writable(c);
    let health = http_get(m, "/health");
    assert!(health.starts_with("HTTP/1.1 200") && health.contains(r#""health":"true""#), "{health}");
    let metrics = http_get(m, "/metrics");
    assert!(metrics.contains("\netcd_server_has_leader 1\n"), "the metrics port serves etcd's metrics: {metrics}");
    assert!(!metrics.contains("grpc_server_handling_seconds"), "latency histograms only with --metrics extensive");
    for line in [
        "initial corruption checking passed; no corruption",
        "enabled capabilities for version",
        "published local member to cluster through raft",
        "ready to serve client requests",
        "serving client traffic insecurely; this is strongly discouraged!",
        "elected leader",
    ] {
        // the member may take a write a moment before it publishes: poll
        wait_for(line, Duration::from_secs(10), || member.log().contains(line).then_some(()));
    }
    let log = member.log();
    assert!(!log.contains("\"level\":\"warn\""), "kubeadm's flags are all implemented:\n{log}");
}

/// etcd's sample config file, holding every key etcd 3.5 reads (its ports and data dir
/// changed), starts a member; the keys that mean nothing to rustcd are named in warnings.
#[test]
fn a_config_file_with_every_etcd_key_starts_a_member() {
    let dir = tempfile::tempdir().expect("dir");
    let (c, p) = (free_port(), free_port());
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/etcd.conf.yml.sample"))
        .expect("the sample config");
    let yaml = sample
        .replace("localhost:2379", &format!("127.0.0.1:{c}"))
        .replace("localhost:2380", &format!("127.0.0.1:{p}"))
        .replace("\ndata-dir:\n", &format!("\ndata-dir: {}/data\n", dir.path().display()));
    let cfg = dir.path().join("etcd.conf.yml");
    std::fs::write(&cfg, yaml).expect("write config");
    let mut member = Member::start(dir.path(), &[format!("--config-file={}", cfg.display())], &[]);
    member.wait_writable(c);
    let log = member.log();
    assert!(log.contains("loaded server configuration"), "{log}");
    for key in ["enable-v2", "enable-pprof"] {
        assert!(log.contains(&format!("--{key} has no effect in rustcd")), "no warning for {key}:\n{log}");
    }
}

#[test]
fn flag_errors_are_gos_and_unbuilt_settings_are_refused() {
    let out = run_etcd(&["--foo"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("flag provided but not defined: -foo\nUsage:"), "{err}");

    let out = run_etcd(&["--snapshot-count", "abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("invalid value \"abc\" for flag -snapshot-count: parse error")
    );

    // Auth settings are checked before anything starts: keys that cannot be read, a bcrypt
    // cost out of bcrypt's range, an unknown token type.
    let out = run_etcd(&["--auth-token=jwt,pub-key=/x.pub,priv-key=/x.key,sign-method=RS256"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth: invalid auth options: /x.key: No such file"), "{err}");
    let out = run_etcd(&["--bcrypt-cost=3"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid bcrypt-cost 3"));
    let out = run_etcd(&["--auth-token=magic"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown token type \"magic\""));

    // A secure URL is never served without its certificate.
    let https = ["--listen-client-urls=https://127.0.0.1:1", "--advertise-client-urls=https://127.0.0.1:1"];
    let out = run_etcd(&https);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:1 with HTTPS scheme"),
        "{err}"
    );
    let out = run_etcd(&[&https[..], &["--cert-file=/nonexistent.crt", "--key-file=/nonexistent.key"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("open /nonexistent.crt: no such file or directory"), "{err}");

    // Log rotation needs one file among the outputs, as etcd's check words it.
    let out = run_etcd(&["--enable-log-rotation"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--log-outputs requires a single file path when --log-rotate-config-json is defined"),
        "{err}"
    );
    let out = run_etcd(&["--enable-log-rotation", "--log-outputs=a.log", "--log-rotation-config-json={maxsize"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("improperly formatted log rotation config"));

    let out = run_etcd(&["positional"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'positional' is not a valid flag"));

    let out = run_etcd(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for flag in ["--max-concurrent-streams '4294967295'", "--experimental-initial-corrupt-check", "--unsafe-no-fsync"] {
        assert!(help.contains(flag), "help lacks {flag}");
    }

    let out = run_etcd(&["grpc-proxy", "start", "--cert=/x.crt"]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--cert and --key must be given together"), "{said}");
    // Its client-facing TLS is built: a certificate without its key is an error, never plaintext.
    let out = run_etcd(&["grpc-proxy", "start", "--cert-file=/x.crt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS needs both a certificate and a key file"));
}

/// `--enable-log-rotation` writes the log to the one file of `--log-outputs`, which rotates at
/// `maxsize` (the rotation itself is tested beside the code, in `log_rotate.rs`).
#[test]
fn log_rotation_writes_to_its_file() {
    let dir = tempfile::tempdir().expect("dir");
    let (c, p) = (free_port(), free_port());
    let file = dir.path().join("member.log");
    let args: Vec<String> = vec![
        format!("--listen-client-urls=http://127.0.0.1:{c}"),
        format!("--advertise-client-urls=http://127.0.0.1:{c}"),
        format!("--listen-peer-urls=http://127.0.0.1:{p}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
        format!("--initial-cluster=default=http://127.0.0.1:{p}"),
        "--enable-log-rotation".into(),
        format!("--log-outputs={}", file.display()),
        r#"--log-rotation-config-json={"maxsize": 1, "maxbackups": 2}"#.into(),
    ];
    let mut member = Member::start(dir.path(), &args, &[]);
    member.wait_writable(c);
    let logged = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(logged.contains("ready to serve client requests"), "{logged}");
    assert!(!member.log().contains("ready to serve"), "the log went to its file only");
}

/// A repeated flag: the last wins. An `ETCD_*` variable etcd does not know is warned about; one
/// it knows is used, and logged. `--listen-client-http-urls` moves the HTTP endpoints.
#[test]
fn repeated_flags_and_environment_variables_as_etcd() {
    let dir = tempfile::tempdir().expect("dir");
    let (c, p, h) = (free_port(), free_port(), free_port());
    let args: Vec<String> = [
        "--name=first".to_string(),
        "--name=second".to_string(),
        format!("--listen-client-http-urls=http://127.0.0.1:{h}"),
        format!("--listen-client-urls=http://127.0.0.1:{c}"),
        format!("--advertise-client-urls=http://127.0.0.1:{c}"),
        format!("--listen-peer-urls=http://127.0.0.1:{p}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
    ]
    .into();
    let data = format!("{}/d", dir.path().display());
    let mut member = Member::start(dir.path(), &args, &[("ETCD_BOGUS_SETTING", "1"), ("ETCD_DATA_DIR", &data)]);
    member.wait_writable(c);
    let members = stdout(&etcdctl(&[&format!("127.0.0.1:{c}")], &["member", "list"]));
    assert!(members.contains(", second, "), "{members}");
    assert!(Path::new(&data).join("member").is_dir());
    let log = member.log();
    assert!(
        log.contains(r#""msg":"unrecognized environment variable","environment-variable":"ETCD_BOGUS_SETTING=1""#),
        "{log}"
    );
    assert!(
        log.contains(r#""msg":"recognized and used environment variable","variable-name":"ETCD_DATA_DIR""#),
        "{log}"
    );
    assert!(http_get(h, "/health").starts_with("HTTP/1.1 200"));
    assert!(!http_get(c, "/health").contains("\"health\""), "HTTP left the client URL");
}

/// `etcd gateway start`: etcd's L4 proxy pipes a client to a member (the first endpoint is
/// down: the gateway skips it).
#[test]
fn the_gateway_proxies_clients_to_a_member() {
    let dir = tempfile::tempdir().expect("dir");
    let (c, p, g, dead) = (free_port(), free_port(), free_port(), free_port());
    let args: Vec<String> = [
        format!("--listen-client-urls=http://127.0.0.1:{c}"),
        format!("--advertise-client-urls=http://127.0.0.1:{c}"),
        format!("--listen-peer-urls=http://127.0.0.1:{p}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
    ]
    .into();
    let mut member = Member::start(dir.path(), &args, &[]);
    member.wait_writable(c);
    let gw_dir = dir.path().join("gw");
    std::fs::create_dir_all(&gw_dir).expect("gateway dir");
    let gw_args: Vec<String> = [
        "gateway".to_string(),
        format!("--endpoints=127.0.0.1:{dead},http://127.0.0.1:{c}"),
        "start".to_string(),
        format!("--listen-addr=127.0.0.1:{g}"),
    ]
    .into();
    let gateway = Member::start(&gw_dir, &gw_args, &[]);
    wait_for("the gateway to listen", Duration::from_secs(10), || {
        gateway.log().contains("ready to proxy client requests").then_some(())
    });
    for _ in 0..2 {
        let out = etcdctl(&[&format!("127.0.0.1:{g}")], &["put", "via", "gateway"]);
        assert_eq!(stdout(&out), "OK\n", "{}", String::from_utf8_lossy(&out.stderr));
    }
    let got = stdout(&etcdctl(&[&format!("127.0.0.1:{c}")], &["get", "via", "--print-value-only"]));
    assert_eq!(got, "gateway\n");
}

/// `--force-new-cluster`: a member of a three-member cluster whose peers are gone restarts as
/// the only member of its cluster, with its data.
#[test]
fn force_new_cluster_restarts_a_member_alone_with_its_data() {
    let dir = tempfile::tempdir().expect("dir");
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}")).collect();
    let args = |i: usize| -> Vec<String> {
        let (c, p) = ports[i];
        vec![
            format!("--name=m{i}"),
            format!("--data-dir={}/m{i}", dir.path().display()),
            format!("--listen-client-urls=http://127.0.0.1:{c}"),
            format!("--advertise-client-urls=http://127.0.0.1:{c}"),
            format!("--listen-peer-urls=http://127.0.0.1:{p}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
            format!("--initial-cluster={}", cluster.join(",")),
        ]
    };
    let logs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("log{i}"))).collect();
    for l in &logs {
        std::fs::create_dir_all(l).expect("log dir");
    }
    let mut members: Vec<Member> = (0..3).map(|i| Member::start(&logs[i], &args(i), &[])).collect();
    members[0].wait_writable(ports[0].0);
    let ep0 = format!("127.0.0.1:{}", ports[0].0);
    for i in 0..20 {
        assert!(etcdctl(&[&ep0], &["put", &format!("key{i}"), "v"]).status.success());
    }
    drop(members); // every member killed

    let mut forced = args(0);
    forced.push("--force-new-cluster".into());
    let mut alone = Member::start(&logs[0], &forced, &[]);
    alone.wait_writable(ports[0].0);
    let got = stdout(&etcdctl(&[&ep0], &["get", "key", "--prefix", "--keys-only"]));
    assert_eq!(got.lines().filter(|l| l.starts_with("key")).count(), 20, "{got}");
    let list = stdout(&etcdctl(&[&ep0], &["member", "list"]));
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains(", m0, "), "{list}");
    assert!(alone.log().contains("forcing restart member as a new single-member cluster"));
}

/// `unix://` peer URLs: three members talk raft over Unix sockets (etcd takes the rest of the
/// URL as the socket's path) and replicate a write.
#[test]
fn members_talk_over_unix_socket_peer_urls() {
    let dir = tempfile::tempdir().expect("dir");
    let sock = |i: usize| format!("unix://{}/m{i}.peer", dir.path().display());
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let cluster: Vec<String> = (0..3).map(|i| format!("m{i}={}", sock(i))).collect();
    let logs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("log{i}"))).collect();
    let mut members: Vec<Member> = (0..3)
        .map(|i| {
            std::fs::create_dir_all(&logs[i]).expect("log dir");
            let args = vec![
                format!("--name=m{i}"),
                format!("--data-dir={}/m{i}", dir.path().display()),
                format!("--listen-client-urls=http://127.0.0.1:{}", clients[i]),
                format!("--advertise-client-urls=http://127.0.0.1:{}", clients[i]),
                format!("--listen-peer-urls={}", sock(i)),
                format!("--initial-advertise-peer-urls={}", sock(i)),
                format!("--initial-cluster={}", cluster.join(",")),
            ];
            Member::start(&logs[i], &args, &[])
        })
        .collect();
    members[0].wait_writable(clients[0]);
    let ep2 = format!("127.0.0.1:{}", clients[2]);
    wait_for("the write to reach the third member", Duration::from_secs(10), || {
        let got = stdout(&etcdctl(&[&ep2], &["get", "k", "--print-value-only", "--consistency=s"]));
        (got == "v\n").then_some(())
    });
}

/// `--host-whitelist` and `--cors` on the client port's HTTP endpoints, side by side with the
/// real etcd: a request naming another host over plain HTTP is refused with etcd's 421 and
/// text; an allowed origin gets etcd's CORS headers; a preflight is answered at once. The JSON
/// gateway's paths answer the same way.
#[test]
fn host_whitelist_and_cors_answer_as_etcd() {
    use rustcd_testkit::{Cluster, Server};
    let flags = ["--host-whitelist=localhost,127.0.0.1", "--cors=https://app.example:8443"];
    let ask = |port: u16, method: &str, path: &str, host: &str, origin: &str| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let origin = if origin.is_empty() { String::new() } else { format!("Origin: {origin}\r\n") };
        let body = if method == "POST" { r#"{"key":"Zm9v"}"# } else { "" };
        let len = body.len();
        // One write: a body arriving after a refusal was sent would reset the connection.
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Length: {len}\r\nConnection: close\r\n\r\n{body}"
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        // The status, the CORS headers (sorted), and the body of a refusal.
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let mut lines = head.lines();
        let status = lines.next().unwrap_or("").to_string();
        let mut cors: Vec<String> = lines
            .filter(|l| l.to_ascii_lowercase().starts_with("access-control-"))
            .map(|l| l.to_ascii_lowercase())
            .collect();
        cors.sort();
        // A chunked body: drop the chunk-size lines.
        let body: String = if status.contains("421") {
            body.split("\r\n")
                .filter(|l| l.is_empty() || !l.bytes().all(|b| b.is_ascii_hexdigit()))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            String::new()
        };
        format!("{status}\n{}\n{}", cors.join("\n"), body.trim())
    };
    let run = |server| {
        let c = Cluster::start_with(server, 1, &flags);
        let port = c.members[0].client_port;
        let local = format!("127.0.0.1:{port}");
        [
            ask(port, "GET", "/version", "evil.example:2379", ""),
            ask(port, "GET", "/version", &format!("localhost:{port}"), ""),
            ask(port, "GET", "/version", &local, "https://app.example:8443"),
            ask(port, "GET", "/version", &local, "https://other.example"),
            ask(port, "OPTIONS", "/version", &local, "https://app.example:8443"),
            ask(port, "POST", "/v3/kv/range", &local, "https://app.example:8443"),
            ask(port, "POST", "/v3/kv/range", &local, "https://other.example"),
            ask(port, "OPTIONS", "/v3/kv/range", &local, "https://app.example:8443"),
            ask(port, "POST", "/v3/kv/range", "evil.example:2379", ""),
        ]
    };
    let (ours, theirs) = (run(Server::Rustcd), run(Server::Etcd));
    assert!(theirs[0].starts_with("HTTP/1.1 421"), "{}", theirs[0]);
    assert!(theirs[0].contains("CVE-2018-5702"), "{}", theirs[0]);
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t);
    }
}
