//! etcd's JSON gateway, side by side with the real etcd 3.4: the calls of etcd's curl
//! documentation (KV, leases, locks, elections, auth) and their errors answer the same bodies
//! and statuses, IDs masked.

use rustcd_testkit::{Cluster, Server, dechunk, http_request_with};

/// Status and body (de-chunked, as JSON), cluster and member IDs masked.
fn call(port: u16, path: &str, body: &str) -> (u16, serde_json::Value) {
    call_with(port, path, &[], body)
}

fn call_with(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, serde_json::Value) {
    let resp = http_request_with(port, "POST", path, headers, body);
    let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, mut body) =
        resp.split_once("\r\n\r\n").map(|(h, b)| (h.to_lowercase(), b.to_string())).unwrap_or_default();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    mask_header(v.get_mut("header"));
    (code, v)
}

/// A response header's cluster and member IDs as `<id>` (they differ between fresh clusters).
fn mask_header(header: Option<&mut serde_json::Value>) {
    if let Some(h) = header.and_then(|h| h.as_object_mut()) {
        for id in ["cluster_id", "member_id"] {
            if h.contains_key(id) {
                h.insert(id.into(), "<id>".into());
            }
        }
    }
}

#[test]
fn gateway_calls_answer_as_the_real_etcds_gateway() {
    let steps: &[(&str, &str)] = &[
        ("/v3/kv/put", r#"{"key": "Zm9v", "value": "YmFy"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v", "range_end": "Zm9w"}"#),
        ("/v3/kv/put", r#"{"value": "YmFy"}"#),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"target":"CREATE","key":"Zm9v","createRevision":"2"}],"success":[{"requestPut":{"key":"Zm9v","value":"YmF6"}}]}"#,
        ),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"version":"2","result":"EQUAL","target":"VERSION","key":"Zm9v"}],"success":[{"requestRange":{"key":"Zm9v"}}]}"#,
        ),
        ("/v3/kv/range", r#"{"key": "Zm9v", "revision": "100"}"#),
        ("/v3/kv/range", r#"{"key": "AA==", "range_end": "AA==", "keys_only": true}"#),
        ("/v3/kv/deleterange", r#"{"key": "Zm9v", "prev_kv": true}"#),
        ("/v3/kv/compaction", r#"{"revision": "3"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v", "revision": "2"}"#),
        ("/v3/lease/grant", r#"{"TTL": "60", "ID": "1000"}"#),
        ("/v3/kv/put", r#"{"key": "bGVhc2Vk", "value": "eA==", "lease": "1000"}"#),
        ("/v3/lease/leases", "{}"),
        ("/v3/kv/lease/leases", "{}"),
        ("/v3/lock/lock", r#"{"name": "bXlsb2Nr", "lease": "1000"}"#),
        ("/v3/lock/unlock", r#"{"key": "bXlsb2NrLzNlOA=="}"#),
        ("/v3/election/leader", r#"{"name": "ZWw="}"#),
        ("/v3/lease/revoke", r#"{"ID": "1000"}"#),
        ("/v3/lease/timetolive", r#"{"ID": "1000", "keys": true}"#),
        ("/v3/lease/revoke", r#"{"ID": "1000"}"#),
        ("/v3/auth/user/add", r#"{"name": "alice", "password": "pw"}"#),
        ("/v3/auth/role/add", r#"{"name": "reader"}"#),
        ("/v3/auth/role/grant", r#"{"name": "reader", "perm": {"key": "YQ==", "range_end": "Yg=="}}"#),
        ("/v3/auth/user/grant", r#"{"user": "alice", "role": "reader"}"#),
        ("/v3/auth/user/get", r#"{"name": "alice"}"#),
        ("/v3/auth/role/get", r#"{"role": "reader"}"#),
        ("/v3/auth/user/list", "{}"),
        ("/v3/auth/enable", "{}"),
        ("/v3/kv/range", r#"{"key": 5}"#),
    ];
    let mut seen = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let c = Cluster::start_with(server, 1, &[]);
        let port = c.members[0].client_port;
        let mut calls = steps.iter().map(|(path, body)| call(port, path, body)).collect::<Vec<_>>();
        calls.extend(auth_flow(port));
        seen.push(calls);
    }
    assert_eq!(seen[0].len(), seen[1].len());
    for (i, (ours, real)) in seen[0].iter().zip(&seen[1]).enumerate() {
        if i == steps.len() - 1 {
            // A body that is not the request: both refuse it as a bad request (the texts are
            // the JSON parsers' own).
            assert_eq!((ours.0, real.0), (400, 400), "{ours:?} vs {real:?}");
            continue;
        }
        assert_eq!(ours, real, "step {i}: {:?}", steps.get(i));
    }
}

/// etcd's documented auth walk-through: root added and granted, auth on, a token, a write with
/// it in the `Authorization` header; without one, and with a wrong one.
fn auth_flow(port: u16) -> Vec<(u16, serde_json::Value)> {
    let mut out = vec![
        call(port, "/v3/auth/user/add", r#"{"name": "root", "password": "pass"}"#),
        call(port, "/v3/auth/role/add", r#"{"name": "root"}"#),
        call(port, "/v3/auth/user/grant", r#"{"user": "root", "role": "root"}"#),
        call(port, "/v3/auth/enable", "{}"),
    ];
    let (status, mut auth) = call(port, "/v3/auth/authenticate", r#"{"name": "root", "password": "pass"}"#);
    let token = auth["token"].as_str().unwrap_or_default().to_string();
    assert!(!token.is_empty(), "{auth}");
    auth["token"] = "<token>".into();
    out.push((status, auth));
    let put = r#"{"key": "Zm9v", "value": "YmFy"}"#;
    out.push(call_with(port, "/v3/kv/put", &[("Authorization", &token)], put));
    out.push(call(port, "/v3/kv/put", put));
    out.push(call_with(port, "/v3/kv/put", &[("Authorization", "not-a-token")], put));
    out
}

/// A stream's lines as JSON, cluster and member IDs masked.
fn masked_lines(lines: Vec<String>) -> Vec<serde_json::Value> {
    lines
        .iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap_or(serde_json::Value::String(l.clone()));
            mask_header(v.pointer_mut("/result/header"));
            v
        })
        .collect()
}

/// What the streams of one server answered.
#[derive(Debug, PartialEq)]
struct Streams {
    history: Vec<serde_json::Value>,
    progress: Vec<serde_json::Value>,
    live: Vec<serde_json::Value>,
    keepalive: Vec<serde_json::Value>,
    keepalive_unknown: Vec<serde_json::Value>,
    compacted: Vec<serde_json::Value>,
    observe: Vec<serde_json::Value>,
    bad_watch_status: u16,
}

fn streams(port: u16) -> (Streams, Vec<u8>) {
    use rustcd_testkit::HttpStream;
    let wait = std::time::Duration::from_secs(10);
    let lines =
        |path: &str, body: &str, n: usize| masked_lines(HttpStream::open(port, "POST", path, body).lines(n, wait));
    call(port, "/v3/kv/put", r#"{"key": "Zm9v", "value": "YmFy"}"#);
    call(port, "/v3/kv/put", r#"{"key": "Zm9v", "value": "YmF6"}"#);
    let history = lines("/v3/watch", r#"{"create_request": {"key": "Zm9v", "start_revision": "1"}}"#, 2);
    let progress = lines("/v3/watch", r#"{"create_request": {"key": "Zm9v"}} {"progress_request": {}}"#, 2);
    // A watch that is open before the write it reports.
    let mut w =
        HttpStream::open(port, "POST", "/v3/watch", r#"{"create_request": {"key": "bGl2ZQ==", "prev_kv": true}}"#);
    let mut live = masked_lines(w.lines(1, wait));
    call(port, "/v3/kv/put", r#"{"key": "bGl2ZQ==", "value": "MQ=="}"#);
    call(port, "/v3/kv/put", r#"{"key": "bGl2ZQ==", "value": "Mg=="}"#);
    call(port, "/v3/kv/deleterange", r#"{"key": "bGl2ZQ=="}"#);
    // The events may come in one response or several: compare them in order.
    let mut events = Vec::new();
    while events.len() < 3 {
        let all = masked_lines(w.lines(live.len() + 1, wait));
        assert!(all.len() > live.len(), "the live watch stopped at {all:?}");
        let next = all[live.len()].clone();
        events.extend(next.pointer("/result/events").and_then(|e| e.as_array()).cloned().unwrap_or_default());
        live.push(next);
    }
    live.truncate(1);
    live.push(serde_json::Value::Array(events));
    call(port, "/v3/lease/grant", r#"{"TTL": "60", "ID": "7"}"#);
    let keepalive = lines("/v3/lease/keepalive", r#"{"ID": "7"}"#, 9);
    let keepalive_unknown = lines("/v3/lease/keepalive", r#"{"ID": "8"}"#, 9);
    call(port, "/v3/kv/compaction", r#"{"revision": "5"}"#);
    let compacted = lines("/v3/watch", r#"{"create_request": {"key": "Zm9v", "start_revision": "2"}}"#, 2);
    call(port, "/v3/election/campaign", r#"{"name": "ZWw=", "value": "dg==", "lease": "7"}"#);
    let observe = lines("/v3/election/observe", r#"{"name": "ZWw="}"#, 1);
    let bad_watch_status = HttpStream::open(port, "POST", "/v3/watch", "xx").status(wait);
    // The snapshot: its pieces as etcd sends them, the database put back together.
    let pieces = masked_lines(HttpStream::open(port, "POST", "/v3/maintenance/snapshot", "{}").lines(usize::MAX, wait));
    let mut db = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let r = &p["result"];
        let blob = r["blob"].as_str().unwrap_or_else(|| panic!("piece {i} has a blob: {p}"));
        db.extend(base64_decode(blob));
        let remaining: u64 = r["remaining_bytes"].as_str().map_or(0, |s| s.parse().unwrap_or(u64::MAX));
        // Every piece says what is still to come; the last two (the end of the database, then
        // its sha256) leave nothing.
        assert_eq!(remaining == 0, i + 2 >= pieces.len(), "piece {i} of {}: {p}", pieces.len());
    }
    assert_eq!(pieces.last().and_then(|p| p["result"]["blob"].as_str()).map(|b| base64_decode(b).len()), Some(32));
    let got = Streams { history, progress, live, keepalive, keepalive_unknown, compacted, observe, bad_watch_status };
    (got, db)
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_else(|e| panic!("base64 {s}: {e}"))
}

#[test]
fn gateway_streams_answer_as_the_real_etcds_gateway() {
    let mut seen = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let c = Cluster::start_with(server, 1, &[]);
        let (got, db) = streams(c.members[0].client_port);
        // The snapshot streamed through the gateway is a database the real etcd's tools read.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("gateway.db");
        std::fs::write(&file, &db).expect("write snapshot");
        let out = std::process::Command::new("/usr/bin/etcdctl")
            .args(["snapshot", "status", "-w", "json"])
            .arg(&file)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl");
        let status = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && status.contains("\"revision\":7"), "{server:?}: {status} {out:?}");
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].bad_watch_status, 500);
    let s = &seen[0];
    assert_eq!((s.history.len(), s.progress.len(), s.compacted.len()), (2, 2, 2), "{s:?}");
    assert_eq!((s.keepalive.len(), s.keepalive_unknown.len(), s.observe.len()), (1, 1, 1), "{s:?}");
    assert_eq!(s.keepalive[0]["result"]["TTL"], "60");
}
