//! DNS SRV discovery (`--discovery-srv`) with a real resolver path: a small DNS server on a
//! loopback address answers the SRV and A records of `srv.test`, and every process of the test
//! (the three members, both etcdctls) runs in its own mount namespace where `/etc/resolv.conf`
//! names that server, so lookups go through the system's own files as in a deployment. The
//! members bootstrap a cluster from `_etcd-server._tcp.srv.test`; the real etcdctl and ours find
//! the client endpoints in `_etcd-client._tcp.srv.test`.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustcd_testkit::{REAL_ETCDCTL, free_port, stdout, wait_for, workspace_bin};

const DOMAIN: &str = "srv.test";

/// What the DNS server answers: SRV records by service, and the address of every host.
struct Zone {
    srv: Vec<(String, Vec<(String, u16)>)>,
}

/// A DNS server on `ip:53` (UDP) answering from `zone` until dropped.
struct Dns {
    ip: Ipv4Addr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dns {
    fn start(zone: Zone) -> Dns {
        // A loopback address of its own, so tests running side by side each have a port 53.
        let (sock, ip) = (0..50)
            .find_map(|_| {
                let p = free_port();
                let ip = Ipv4Addr::new(127, 53, (p >> 8) as u8, p as u8 | 1);
                UdpSocket::bind((ip, 53)).ok().map(|s| (s, ip))
            })
            .expect("bind a DNS server on a loopback address (port 53 needs root)");
        sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf)
                    && let Some(reply) = answer(&zone, &buf[..n])
                {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        Dns { ip, stop, thread: Some(thread) }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// The reply to one query: SRV records of the zone, A 127.0.0.1 for any host under the domain,
/// NXDOMAIN for names it does not know, no records (NOERROR) for other types of known hosts.
fn answer(zone: &Zone, q: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    while *q.get(at)? != 0 {
        let len = q[at] as usize;
        labels.push(String::from_utf8_lossy(q.get(at + 1..at + 1 + len)?).to_lowercase());
        at += 1 + len;
    }
    let qend = at + 5;
    let qtype = u16::from_be_bytes([*q.get(at + 1)?, *q.get(at + 2)?]);
    let name = labels.join(".");
    let mut records: Vec<(u16, Vec<u8>)> = Vec::new();
    let known = if let Some((_, targets)) = zone.srv.iter().find(|(s, _)| *s == name) {
        if qtype == 33 {
            for (target, port) in targets {
                let mut rdata = vec![0, 0, 0, 10];
                rdata.extend_from_slice(&port.to_be_bytes());
                rdata.extend_from_slice(&encode_name(target));
                records.push((33, rdata));
            }
        }
        true
    } else if name.ends_with(DOMAIN) && !name.starts_with('_') {
        if qtype == 1 {
            records.push((1, vec![127, 0, 0, 1]));
        }
        true
    } else {
        false
    };
    let mut r = q[..qend].to_vec();
    r[2] = 0x80 | (q[2] & 0x01);
    r[3] = if known { 0x80 } else { 0x83 };
    r[6..12].copy_from_slice(&[0, records.len() as u8, 0, 0, 0, 0]);
    for (rtype, rdata) in records {
        r.extend_from_slice(&[0xc0, 12]);
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    Some(r)
}

/// `program args...` in a mount namespace whose `/etc/resolv.conf` is `resolv`.
fn in_namespace(resolv: &Path, program: &Path, args: &[String]) -> Command {
    let mut c = if is_root() { Command::new("unshare") } else { sudo_unshare() };
    c.args(["-m", "--", "sh", "-c", r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#])
        .arg(resolv)
        .arg(program)
        .args(args);
    c
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn sudo_unshare() -> Command {
    let mut c = Command::new("sudo");
    c.args(["-n", "unshare"]);
    c
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_member(dir: &Path, resolv: &Path, m: &mut Member, extra: &[&str]) {
    let mut args: Vec<String> = [
        "--name",
        &m.name,
        "--data-dir",
        &dir.join(&m.name).display().to_string(),
        "--listen-client-urls",
        &format!("http://127.0.0.1:{}", m.client),
        "--advertise-client-urls",
        &format!("http://127.0.0.1:{}", m.client),
        "--listen-peer-urls",
        &format!("http://127.0.0.1:{}", m.peer),
        "--initial-advertise-peer-urls",
        &format!("http://{}.{DOMAIN}:{}", m.name, m.peer),
        "--discovery-srv",
        DOMAIN,
        "--initial-cluster-token",
        "srv-test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let log = std::fs::File::create(&m.log).expect("log");
    let child = in_namespace(resolv, &workspace_bin("etcd"), &args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn etcd");
    m.child = Some(child);
}

fn run(resolv: &Path, program: &Path, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    in_namespace(resolv, program, &args).env("ETCDCTL_API", "3").output().expect("run etcdctl")
}

#[test]
fn a_cluster_bootstraps_from_dns_srv_records_and_etcdctl_finds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member {
            name: format!("m{i}"),
            client: free_port(),
            peer: free_port(),
            child: None,
            log: dir.path().join(format!("m{i}.log")),
        })
        .collect();
    let host = |m: &Member| format!("{}.{DOMAIN}.", m.name);
    let zone = Zone {
        srv: vec![
            (format!("_etcd-server._tcp.{DOMAIN}"), members.iter().map(|m| (host(m), m.peer)).collect()),
            (format!("_etcd-client._tcp.{DOMAIN}"), members.iter().map(|m| (host(m), m.client)).collect()),
        ],
    };
    let dns = Dns::start(zone);
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\noptions timeout:1 attempts:2\n", dns.ip)).expect("resolv.conf");

    // Bootstrap refusals first, as etcd words them.
    let mut stray = Member {
        name: "m9".into(),
        client: free_port(),
        peer: free_port(),
        child: None,
        log: dir.path().join("m9.log"),
    };
    start_member(dir.path(), &resolv, &mut stray, &[]);
    let status = stray.child.take().expect("child").wait().expect("wait");
    let log = std::fs::read_to_string(&stray.log).unwrap_or_default();
    assert!(!status.success(), "a member missing from the records does not start");
    assert!(log.contains(r#"cannot find local etcd member "m9" in SRV records"#), "{log}");
    start_member(dir.path(), &resolv, &mut stray, &["--initial-cluster", "m9=http://127.0.0.1:1"]);
    let status = stray.child.take().expect("child").wait().expect("wait");
    let log = std::fs::read_to_string(&stray.log).unwrap_or_default();
    assert!(!status.success() && log.contains("multiple discovery or bootstrap flags are set"), "{log}");

    for m in members.iter_mut() {
        start_member(dir.path(), &resolv, m, &[]);
    }
    let real = PathBuf::from(REAL_ETCDCTL);
    let ours = workspace_bin("etcdctl");
    let discovered = ["--discovery-srv", DOMAIN, "--insecure-discovery"];
    let put = [&discovered[..], &["put", "found", "by-srv"]].concat();
    wait_for("the SRV-bootstrapped cluster takes a write", Duration::from_secs(60), || {
        for m in members.iter_mut() {
            if let Some(Ok(Some(s))) = m.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited with {s}: {}", m.name, std::fs::read_to_string(&m.log).unwrap_or_default());
            }
        }
        run(&resolv, &real, &put).status.success().then_some(())
    });
    let ep = format!("--endpoints=127.0.0.1:{}", members[0].client);
    // Once every member has published itself, the list shows the names and URLs from DNS.
    let lines: Vec<String> = members
        .iter()
        .map(|m| format!("{}, http://{}.{DOMAIN}:{}, http://127.0.0.1:{}", m.name, m.name, m.peer, m.client))
        .collect();
    wait_for("every member published in the member list", Duration::from_secs(20), || {
        let list = stdout(&run(&resolv, &real, &[&ep, "member", "list"]));
        lines.iter().all(|l| list.contains(l)).then_some(())
    });
    for ctl in [&real, &ours] {
        let got = run(&resolv, ctl, &[&discovered[..], &["get", "found", "--print-value-only"]].concat());
        let said = String::from_utf8_lossy(&got.stderr);
        assert_eq!(stdout(&got), "by-srv\n", "{} reads through the discovered endpoints: {said}", ctl.display());
    }
    // With --insecure-discovery=false etcdctl drops the http endpoints it found and speaks TLS
    // (server name: the domain), so a plaintext member is never read from.
    for ctl in [&real, &ours] {
        let args = ["--discovery-srv", DOMAIN, "--insecure-discovery=false", &ep, "get", "found", "--print-value-only"];
        let strict = run(&resolv, ctl, &args);
        let said = String::from_utf8_lossy(&strict.stderr);
        assert!(!strict.status.success() && stdout(&strict).is_empty(), "{}: {said}", ctl.display());
        assert!(said.contains("ignoring discovered insecure endpoint"), "{}: {said}", ctl.display());
    }
    // etcd's L4 gateway finds its endpoints the same way.
    let listen = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> =
        ["gateway", "start", "--discovery-srv", DOMAIN, "--insecure-discovery", "--listen-addr", &listen]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut gateway =
        Member { name: "gateway".into(), client: 0, peer: 0, child: None, log: dir.path().join("gw.log") };
    let log = std::fs::File::create(&gateway.log).expect("log");
    gateway.child =
        Some(in_namespace(&resolv, &workspace_bin("etcd"), &args).stderr(log).spawn().expect("spawn the gateway"));
    let through = format!("--endpoints={listen}");
    wait_for("a read through the gateway", Duration::from_secs(20), || {
        let got = run(&resolv, &real, &[&through, "get", "found", "--print-value-only"]);
        (stdout(&got) == "by-srv\n").then_some(())
    });
    let said = std::fs::read_to_string(&gateway.log).unwrap_or_default();
    assert!(said.contains("discovered cluster from SRV"), "{said}");
    // Without --insecure-discovery it keeps only https endpoints: the http ones found are
    // dropped with etcd's warning, and --endpoints is used instead.
    let listen = format!("127.0.0.1:{}", free_port());
    let fallback = format!("--endpoints=127.0.0.1:{}", members[0].client);
    let args: Vec<String> = ["gateway", "start", "--discovery-srv", DOMAIN, &fallback, "--listen-addr", &listen]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut strict = Member { name: "strict".into(), client: 0, peer: 0, child: None, log: dir.path().join("gw2.log") };
    let log = std::fs::File::create(&strict.log).expect("log");
    strict.child =
        Some(in_namespace(&resolv, &workspace_bin("etcd"), &args).stderr(log).spawn().expect("spawn the gateway"));
    let through = format!("--endpoints={listen}");
    wait_for("a read through the strict gateway", Duration::from_secs(20), || {
        let got = run(&resolv, &real, &[&through, "get", "found", "--print-value-only"]);
        (stdout(&got) == "by-srv\n").then_some(())
    });
    let said = std::fs::read_to_string(&strict.log).unwrap_or_default();
    assert!(said.contains("failed to validate discovered endpoints") && said.contains("is insecure"), "{said}");
    drop(members);
}
