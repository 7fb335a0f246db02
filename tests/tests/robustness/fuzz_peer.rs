//! Hostile and garbled peer traffic: raft messages that no correct peer sends (a heartbeat
//! committing past the log, appends from nowhere, random fields) and undecodable bytes, sent to
//! a member's peer port (etcd's pipeline, `POST /raft`, with a fellow member's headers). The
//! member must keep running and serving; it must never panic.

use std::time::Duration;

use rustcd_peer::rafthttp::client;
use rustcd_testkit::ClusterExt as _;
use rustcd_testkit::{Cluster, leader_index, stdout};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A protobuf message from (field number, value) varint pairs.
fn message(fields: &[(u32, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(field, value) in fields {
        varint(&mut out, u64::from(field) << 3);
        varint(&mut out, value);
    }
    out
}

/// `message` plus `entries` (eraftpb.Entry: type, term, index) in field 7.
fn with_entries(fields: &[(u32, u64)], entries: &[(u64, u64, u64)]) -> Vec<u8> {
    let mut out = message(fields);
    for &(kind, term, index) in entries {
        let e = message(&[(1, kind), (2, term), (3, index)]);
        varint(&mut out, (7 << 3) | 2);
        varint(&mut out, e.len() as u64);
        out.extend_from_slice(&e);
    }
    out
}

// eraftpb.Message fields and message types.
const MSG_TYPE: u32 = 1;
const TO: u32 = 2;
const FROM: u32 = 3;
const TERM: u32 = 4;
const LOG_TERM: u32 = 5;
const INDEX: u32 = 6;
const COMMIT: u32 = 8;
const MSG_APPEND: u64 = 3;
const MSG_HEARTBEAT: u64 = 8;

fn member_ids(c: &Cluster) -> Vec<u64> {
    let list = stdout(&c.etcdctl(0, &["member", "list"]));
    list.lines().filter_map(|l| u64::from_str_radix(l.split(',').next()?, 16).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_hostile_peer_messages_never_panic_a_member() {
    let c = Cluster::start(3);
    c.wait_writable(0);
    let ids = member_ids(&c);
    let cluster_id: u64 = {
        let out = stdout(&c.etcdctl(0, &["get", "x", "-w", "json"]));
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["header"]["cluster_id"].as_u64().expect("cluster id")
    };
    let leader = leader_index(&c).expect("a leader");
    // RUSTCD_FUZZ_SEED picks other messages, and the leader instead of a follower when odd.
    let seed0: u64 = std::env::var("RUSTCD_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let target = if seed0 % 2 == 1 { leader } else { (leader + 1) % 3 };
    let target_id = {
        let out = stdout(&c.etcdctl(target, &["get", "x", "-w", "json"]));
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["header"]["member_id"].as_u64().expect("member id")
    };
    let peer = ids.iter().copied().find(|id| *id != target_id).expect("another member");
    let mut seed = 0x1234_5678_9abc_def1u64 ^ seed0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut batches = vec![
        // A "leader" with a higher term committing far past the log.
        vec![message(&[(MSG_TYPE, MSG_HEARTBEAT), (TO, target_id), (FROM, peer), (TERM, 1000), (COMMIT, 1 << 40)])],
        // Appends that claim a history the member does not have.
        vec![message(&[
            (MSG_TYPE, MSG_APPEND),
            (TO, target_id),
            (FROM, peer),
            (TERM, 1001),
            (LOG_TERM, 999),
            (INDEX, 1 << 30),
            (COMMIT, 1 << 35),
        ])],
        // From a member that does not exist.
        vec![message(&[(MSG_TYPE, MSG_HEARTBEAT), (TO, target_id), (FROM, 42), (TERM, 5000), (COMMIT, 7)])],
        // Undecodable bytes.
        vec![vec![0xff, 0xff, 0xff, 0x01], vec![]],
    ];
    for _ in 0..300 {
        let fields: Vec<(u32, u64)> = (0..1 + rnd() % 8)
            .map(|_| {
                let field = [MSG_TYPE, TO, FROM, TERM, LOG_TERM, INDEX, COMMIT][(rnd() % 7) as usize];
                let value = match field {
                    MSG_TYPE => rnd() % 20,
                    TO => target_id,
                    FROM => [peer, 42, 0, target_id][(rnd() % 4) as usize],
                    _ => [0, 1, 2, 1000, rnd(), rnd() % 100][(rnd() % 6) as usize],
                };
                (field, value)
            })
            .collect();
        let entries: Vec<(u64, u64, u64)> = (0..rnd() % 3)
            .map(|_| (rnd() % 4, [0, 1, 2, 1000][(rnd() % 4) as usize], [0, 1, 2, 5, rnd()][(rnd() % 5) as usize]))
            .collect();
        batches.push(vec![with_entries(&fields, &entries)]);
    }
    let url = c.members[target].advertised_peer_url();
    let local = rustcd_peer::Local { id: peer, cluster_id, peer_urls: vec![], server_version: "3.5.13" };
    let mut answered = 0;
    for messages in batches {
        for m in messages {
            let req = client::request(&url, "POST", "/raft", Some(&local), m.into()).expect("request");
            answered += usize::from(client::send(&url, None, Duration::from_secs(2), req).await.is_ok());
        }
    }
    assert!(answered > 300, "the peer port answered the messages ({answered})");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = std::fs::read_to_string(&c.members[target].log).unwrap_or_default();
    assert!(!log.contains("panicked"), "the member panicked:\n{}", &log[log.len().saturating_sub(3000)..]);
    assert!(c.members[target].is_running(), "the member is still running");
    // The cluster still takes writes through the member that was attacked.
    rustcd_testkit::wait_for("a write through the attacked member", Duration::from_secs(20), || {
        c.etcdctl(target, &["put", "after", "attack", "--command-timeout=2s"]).status.success().then_some(())
    });
}
