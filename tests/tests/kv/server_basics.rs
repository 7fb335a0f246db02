//! The `etcd` binary as a user meets it: version, config file and `ETCD_*` variables, JSON
//! logs, `/health`, `/version`, `endpoint status` and `member list`.

use std::process::{Command, Stdio};
use std::time::Duration;

use rustcd_testkit::ClusterExt as _;
use rustcd_testkit::{Cluster, etcdctl, free_port, http_get, stdout, wait_for, workspace_bin};

#[test]
fn version_flag_names_the_etcd_api_and_rustcd() {
    let out = Command::new(workspace_bin("etcd")).arg("--version").output().expect("run etcd --version");
    let text = stdout(&out);
    assert!(out.status.success());
    assert!(text.starts_with("etcd Version: 3.5."), "{text}");
    assert!(text.contains("rustcd Version: "), "{text}");
}

#[test]
fn health_version_status_and_member_list() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let port = c.members[0].client_port;
    let health = http_get(port, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with(r#"{"health":"true","reason":""}"#), "{health}");
    // The leader sets the cluster version once it leads (etcd's monitorVersions).
    let version = wait_for("the cluster version", Duration::from_secs(10), || {
        let v = http_get(port, "/version");
        v.contains(r#""etcdcluster":"3.5."#).then_some(v)
    });
    assert!(version.contains(r#""etcdserver":"3.5."#), "{version}");

    let status = stdout(&c.etcdctl(0, &["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&status).expect("status json");
    let st = &v[0]["Status"];
    assert_eq!(st["leader"], st["header"]["member_id"], "a lone member leads: {status}");
    assert_eq!(st["raftTerm"], 2, "first election after bootstrap is term 2, as etcd: {status}");
    assert!(st["dbSize"].as_i64().unwrap_or(0) > 0 && st["raftIndex"] == st["raftAppliedIndex"], "{status}");

    // The member publishes its client URLs through raft right after it starts.
    let m = &c.members[0];
    let line = format!(", started, m0, {}, {}, false\n", m.peer_url(), m.client_url());
    wait_for("the member's published client URLs", Duration::from_secs(10), || {
        stdout(&c.etcdctl(0, &["member", "list"])).ends_with(&line).then_some(())
    });
}

#[test]
fn config_file_and_env_vars_are_honoured_and_logs_are_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, peer) = (free_port(), free_port());
    let yaml = format!(
        "name: fromfile\ndata-dir: {}/data\nlisten-client-urls: http://127.0.0.1:{client}\nadvertise-client-urls: http://127.0.0.1:{client}\nlisten-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\ninitial-cluster: fromfile=http://127.0.0.1:{peer}\ninitial-cluster-token: tok\n",
        dir.path().display()
    );
    let cfg = dir.path().join("etcd.conf.yml");
    std::fs::write(&cfg, yaml).expect("write config");
    let log = dir.path().join("log");
    let mut child = Command::new(workspace_bin("etcd"))
        .env("ETCD_CONFIG_FILE", &cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn");
    let ep = format!("127.0.0.1:{client}");
    wait_for("the configured member to serve", Duration::from_secs(20), || {
        etcdctl(&[&ep], &["put", "a", "b"]).status.success().then_some(())
    });
    let members = stdout(&etcdctl(&[&ep], &["member", "list"]));
    let _ = child.kill();
    let _ = child.wait();
    assert!(members.contains(", fromfile, "), "{members}");
    assert!(dir.path().join("data/member").is_dir());
    let text = std::fs::read_to_string(&log).expect("read log");
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a log line")).expect("JSON log line");
    for key in ["level", "ts", "caller", "msg"] {
        assert!(first.get(key).is_some(), "log line lacks {key}: {first}");
    }
}
