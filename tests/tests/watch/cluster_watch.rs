//! Watches on any member see every write made through any member, once and in order; a member
//! of another cluster (different token, so another cluster ID) is refused by the peers.

use std::time::Duration;

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use rustcd_testkit::{Cluster, channel, wait_for};
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_watch_on_any_member_sees_writes_through_all() {
    let c = Cluster::start(3);
    c.wait_writable(0);
    let mut streams = Vec::new();
    for m in &c.members {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create =
            WatchCreateRequest { key: b"w/".to_vec().into(), range_end: b"w0".to_vec().into(), ..Default::default() };
        tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
        let mut s = WatchClient::new(channel(&m.endpoint()).await)
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("watch")
            .into_inner();
        assert!(s.next().await.unwrap().unwrap().created);
        streams.push((tx, s));
    }
    let mut clients = Vec::new();
    for m in &c.members {
        clients.push(KvClient::new(channel(&m.endpoint()).await));
    }
    const N: usize = 300;
    for n in 0..N {
        let put =
            PutRequest { key: format!("w/{n}").into_bytes().into(), value: b"v".to_vec().into(), ..Default::default() };
        clients[n % 3].put(put).await.expect("put");
    }
    for (i, (_tx, s)) in streams.iter_mut().enumerate() {
        let mut keys = Vec::new();
        let mut last_rev = 0;
        while keys.len() < N {
            let resp = tokio::time::timeout(Duration::from_secs(10), s.next())
                .await
                .unwrap_or_else(|_| panic!("member {i}: only {} of {N} events", keys.len()))
                .unwrap()
                .unwrap();
            for e in resp.events {
                let kv = e.kv.unwrap();
                assert!(kv.mod_revision > last_rev, "member {i}: events out of order");
                last_rev = kv.mod_revision;
                keys.push(String::from_utf8_lossy(&kv.key).into_owned());
            }
        }
        let want: Vec<String> = (0..N).map(|n| format!("w/{n}")).collect();
        assert_eq!(keys, want, "member {i} saw every write once, in order");
    }
}

#[test]
fn cluster_member_of_another_cluster_is_refused() {
    let c = Cluster::start(3);
    c.wait_writable(0);
    // A member with the same peer URLs in its configuration but another token: its cluster ID
    // differs, so the members must refuse its messages (and it theirs).
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, peer) = (rustcd_testkit::free_port(), rustcd_testkit::free_port());
    let mut initial: Vec<String> = c.members.iter().skip(1).map(|m| format!("{}={}", m.name, m.peer_url())).collect();
    initial.push(format!("intruder=http://127.0.0.1:{peer}"));
    let log = dir.path().join("intruder.log");
    let mut child = std::process::Command::new(rustcd_testkit::workspace_bin("etcd"))
        .args(["--name", "intruder", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
        .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &initial.join(","), "--initial-cluster-token", "other-token"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn intruder");
    wait_for("the peers to refuse the intruder", Duration::from_secs(20), || {
        let theirs = std::fs::read_to_string(&c.members[1].log).unwrap_or_default();
        let mine = std::fs::read_to_string(&log).unwrap_or_default();
        (theirs.contains("request cluster ID mismatch") && mine.contains("cluster ID mismatch")).then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    // The real cluster is unharmed.
    c.wait_writable(0);
}
