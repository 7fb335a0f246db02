//! The user's walkthrough (`shared/seed/etcd-assignment.txt`), parts C, D and E, with our
//! `etcd`, as printed there (only the data dirs differ), once with the real `etcdctl` and once
//! with ours.

use std::time::{Duration, Instant};

use rustcd_testkit::{Cluster, Ctl, ctl_watch, parse_status_table, stdout, wait_for};

const NODES: [(&str, u16, u16); 3] = [("etcd-1", 2369, 2390), ("etcd-2", 2359, 2391), ("etcd-3", 2389, 2392)];

fn config(name: &str, client: u16, peer: u16, data_dir: &str) -> String {
    format!(
        "name: {name}\ndata-dir: {data_dir}\ninitial-advertise-peer-urls: http://127.0.0.2:{peer}\nlisten-peer-urls: http://127.0.0.2:{peer}\nlisten-client-urls: http://127.0.0.2:{client},http://localhost:{client}\nadvertise-client-urls: http://127.0.0.2:{client}\ninitial-cluster-token: etcd-cluster\ninitial-cluster: etcd-1=http://127.0.0.2:2390,etcd-2=http://127.0.0.2:2391,etcd-3=http://127.0.0.2:2392\ninitial-cluster-state: new\n"
    )
}

fn status_table(ctl: Ctl, client: u16) -> Vec<(String, String, bool, u64)> {
    let url = format!("http://127.0.0.2:{client}");
    let out = ctl.run(&url, &["endpoint", "status", "--write-out=table"], None);
    parse_status_table(&stdout(&out))
}

#[test]
fn cluster_seed_walkthrough_parts_c_d_e() {
    walkthrough(Ctl::Real);
}

#[test]
fn cluster_seed_walkthrough_with_our_etcdctl() {
    walkthrough(Ctl::Ours);
}

fn walkthrough(ctl: Ctl) {
    let dir = rustcd_testkit::TempDir::new().expect("temp dir");
    let mut members = Vec::new();
    for (i, (name, client, peer)) in NODES.iter().enumerate() {
        let data_dir = dir.path().join(format!("etcd{}", i + 1));
        let path = dir.path().join(format!("etcd{}.conf.yml", i + 1));
        std::fs::write(&path, config(name, *client, *peer, &data_dir.display().to_string())).expect("write config");
        members.push((name.to_string(), "127.0.0.2".to_string(), *client, *peer, path));
    }
    let mut c = Cluster::start_from_configs(dir, members);

    // Part C on the cluster: put, get, watch, change, delete.
    c.wait_writable(0);
    let ep = "localhost:2369";
    assert_eq!(stdout(&ctl.run(ep, &["put", "srn", "pes1ug21csxxx"], None)), "OK\n");
    assert_eq!(stdout(&ctl.run(ep, &["get", "srn"], None)), "srn\npes1ug21csxxx\n");
    // The seed starts `watch srn` before the changes; starting it from the next revision
    // makes that order hold however long the watcher takes to connect.
    let json = stdout(&ctl.run(ep, &["get", "srn", "-w", "json"], None));
    let rev = serde_json::from_str::<serde_json::Value>(&json).expect("get json")["header"]["revision"]
        .as_i64()
        .expect("revision");
    let from = format!("--rev={}", rev + 1);
    let watcher = std::thread::spawn(move || {
        ctl_watch(ctl, "localhost:2359", &["watch", "srn", &from], 6, Duration::from_secs(15))
    });
    assert_eq!(stdout(&ctl.run("localhost:2389", &["put", "srn", "pes1ug21csxxx_your_name"], None)), "OK\n");
    assert_eq!(stdout(&ctl.run(ep, &["del", "srn"], None)), "1\n");
    let watched = watcher.join().expect("watch thread");
    assert_eq!(watched.stdout, "PUT\nsrn\npes1ug21csxxx_your_name\nDELETE\nsrn\n\n");

    // Part D/E: every endpoint's status table; one leader, one term.
    let tables: Vec<_> = NODES.iter().map(|(_, client, _)| status_table(ctl, *client)).collect();
    let rows: Vec<_> = tables.iter().map(|t| t.first().cloned().expect("a status row")).collect();
    assert_eq!(rows.iter().filter(|r| r.2).count(), 1, "exactly one leader: {rows:?}");
    assert!(rows.iter().all(|r| r.3 == rows[0].3), "one term: {rows:?}");
    let ids: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(ids, ["80f0dfea5ea0c542", "366952c5ece74e7c", "f42c8c852ecdaa90"], "etcd's member IDs for these URLs");
    let old_term = rows[0].3;
    let leader = rows.iter().position(|r| r.2).expect("leader");

    // Ctrl+C on the leader: a new leader with a higher term, well under a second later.
    let stopped = Instant::now();
    c.kill(leader, libc::SIGINT);
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_rows = wait_for("a new leader", Duration::from_secs(10), || {
        let rows: Vec<_> = others.iter().filter_map(|i| status_table(ctl, NODES[*i].1).first().cloned()).collect();
        (rows.len() == 2 && rows.iter().filter(|r| r.2).count() == 1).then_some(rows)
    });
    let took = stopped.elapsed();
    assert!(new_rows.iter().all(|r| r.3 > old_term && r.3 == new_rows[0].3), "higher, shared term: {new_rows:?}");
    eprintln!("new leader seen {took:?} after SIGINT on the old one");
    assert!(took < Duration::from_secs(3), "graceful stop should hand over leadership at once, took {took:?}");
    // The stopped member comes back as a follower.
    c.restart(leader);
    wait_for("the old leader to rejoin", Duration::from_secs(10), || {
        let t = status_table(ctl, NODES[leader].1);
        t.first().filter(|r| !r.2 && r.3 >= new_rows[0].3).map(|_| ())
    });
}
