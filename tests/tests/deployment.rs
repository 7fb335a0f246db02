//! Deployment as etcd is deployed: the systemd unit (`deploy/systemd/etcd.service`) passes
//! `systemd-analyze verify` and its security review, and `etcd` tells a `Type=notify` unit's
//! systemd that it is ready (READY=1 on `$NOTIFY_SOCKET`) once it serves.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustcd_testkit::{Ctl, free_port, stdout, workspace_bin};

fn unit_text() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/etcd.service");
    std::fs::read_to_string(path).expect("deploy/systemd/etcd.service")
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().expect("dir");
    // Verified with this build's etcd as its ExecStart (the packaged path need not exist here).
    let unit =
        unit_text().replace("ExecStart=/usr/bin/etcd", &format!("ExecStart={}", workspace_bin("etcd").display()));
    assert!(unit.contains("Type=notify") && unit.contains("LimitNOFILE=65536"), "{unit}");
    let path = dir.path().join("etcd.service");
    std::fs::write(&path, unit).expect("write unit");
    let out =
        Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze (package systemd)");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && errors.trim().is_empty(), "systemd-analyze verify: {errors}");
    let out =
        Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(&path).output().expect("security");
    let text = stdout(&out);
    let exposure = text
        .lines()
        .find_map(|l| l.strip_prefix("→ Overall exposure level for etcd.service: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    assert!(exposure.is_some_and(|e| e <= 2.0), "exposure {exposure:?} (at most 2.0, 'OK'): {text}");
}

#[test]
fn etcd_notifies_systemd_once_it_serves() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("notify");
    let listener = UnixDatagram::bind(&socket).expect("bind the notify socket");
    listener.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let (client, peer) = (free_port(), free_port());
    let log = dir.path().join("log");
    let mut child = Command::new(workspace_bin("etcd"))
        .env("NOTIFY_SOCKET", &socket)
        .args(["--name", "n1", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-cluster=n1=http://127.0.0.1:{peer}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start etcd");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let got = listener.recv(&mut buf);
    let ready = got.map(|n| buf[..n].to_vec());
    // Ready means serving: a put goes through at once.
    let put = Ctl::Ours.run(&format!("127.0.0.1:{client}"), &["put", "k", "v"], None);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ready.ok().as_deref(), Some(&b"READY=1"[..]), "no READY=1 within 20 s: {text}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(stdout(&put), "OK\n", "{text}");
    assert!(text.contains("successfully notified init daemon"), "etcd's log line: {text}");
}
