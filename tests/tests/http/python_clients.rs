//! Python clients people run against etcd, run against rustcd: OpenStack's `etcd3gw` (PyPI),
//! which talks to etcd's JSON gateway. The same script runs against the real etcd 3.4 first, so
//! a failure here is rustcd's, not the script's. `scripts/test.sh` installs the package.

use rustcd_testkit::{Cluster, Server};

fn run_script(script: &str, port: u16) -> std::process::Output {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients").join(script);
    std::process::Command::new("timeout")
        .args(["120", "python3"])
        .arg(&path)
        .args(["127.0.0.1", &port.to_string()])
        .output()
        .expect("run python3 (scripts/test.sh installs it and the clients)")
}

#[test]
fn etcd3gw_put_get_delete_txn_lease_watch_lock() {
    for server in [Server::Etcd, Server::Rustcd] {
        let c = Cluster::start_with(server, 1, &[]);
        let out = run_script("etcd3gw_check.py", c.members[0].client_port);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("etcd3gw: all checks passed"),
            "{server:?}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
