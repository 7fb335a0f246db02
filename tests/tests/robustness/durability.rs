//! kill -9 at any moment loses no acknowledged write and leaves a data dir that opens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::{PutRequest, RangeRequest};
use rustcd_testkit::{Cluster, channel, prefix_end};

const WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_write_load_loses_no_acknowledged_write() {
    let mut c = Cluster::start(1);
    let ep = c.members[0].endpoint();
    for round in 0..3 {
        let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let ch = channel(&ep).await;
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                let mut kv = KvClient::new(ch);
                for n in 1u64.. {
                    let key = format!("r{round}/w{w}/{n}");
                    let put = PutRequest {
                        key: key.clone().into_bytes().into(),
                        value: n.to_string().into_bytes().into(),
                        ..Default::default()
                    };
                    let last = PutRequest {
                        key: format!("r{round}/last/{w}").into_bytes().into(),
                        value: n.to_string().into_bytes().into(),
                        ..Default::default()
                    };
                    if kv.put(put).await.is_err() || kv.put(last).await.is_err() {
                        return;
                    }
                    acked.lock().unwrap().insert(key, n);
                }
            }));
        }
        let count = || acked.lock().unwrap().len();
        let started = std::time::Instant::now();
        while count() < 500 * (round + 1) && started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        c.kill(0, libc::SIGKILL);
        for t in tasks {
            let _ = t.await;
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= 500, "the load made too little progress: {}", acked.len());
        c.restart(0);

        let mut kv = KvClient::new(channel(&ep).await);
        let range = |prefix: String| RangeRequest {
            key: prefix.clone().into_bytes().into(),
            range_end: prefix_end(prefix.as_bytes()).into(),
            ..Default::default()
        };
        let got = kv.range(range(format!("r{round}/w"))).await.expect("range after restart").into_inner();
        let stored: HashMap<String, String> = got
            .kvs
            .iter()
            .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), String::from_utf8_lossy(&kv.value).into_owned()))
            .collect();
        let lost: Vec<_> = acked.iter().filter(|(k, v)| stored.get(*k) != Some(&v.to_string())).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            acked.len(),
            lost.first()
        );
        // Each writer's `last` key holds at least its last acknowledged value.
        let lasts = kv.range(range(format!("r{round}/last/"))).await.expect("range lasts").into_inner();
        for w in 0..WRITERS {
            let max_acked =
                acked.iter().filter(|(k, _)| k.starts_with(&format!("r{round}/w{w}/"))).map(|(_, v)| *v).max();
            let Some(max_acked) = max_acked else { continue };
            let key = format!("r{round}/last/{w}");
            let v: u64 = lasts
                .kvs
                .iter()
                .find(|kv| kv.key.as_ref() == key.as_bytes())
                .and_then(|kv| String::from_utf8_lossy(&kv.value).parse().ok())
                .unwrap_or(0);
            assert!(v >= max_acked, "{key} = {v} but {max_acked} was acknowledged");
        }
        // And the member still takes writes.
        kv.put(PutRequest { key: b"after".to_vec().into(), value: b"1".to_vec().into(), ..Default::default() })
            .await
            .expect("write after restart");
    }
}
