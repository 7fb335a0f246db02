//! etcd's JSON gateway, side by side with the real etcd 3.4: the calls of etcd's curl
//! documentation (KV, leases, locks, elections, auth) and their errors answer the same bodies
//! and statuses, IDs masked.

use rustcd_testkit::{Cluster, Server, http_request};

/// Status and body (de-chunked, as JSON), cluster and member IDs masked.
fn call(port: u16, path: &str, body: &str) -> (u16, serde_json::Value) {
    let resp = http_request(port, "POST", path, body);
    let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, mut body) =
        resp.split_once("\r\n\r\n").map(|(h, b)| (h.to_lowercase(), b.to_string())).unwrap_or_default();
    if head.contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n.min(after.len())]);
            rest = after.get(n + 2..).unwrap_or("");
        }
        body = out;
    }
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    if let Some(h) = v.get_mut("header").and_then(|h| h.as_object_mut()) {
        for id in ["cluster_id", "member_id"] {
            if h.contains_key(id) {
                h.insert(id.into(), "<id>".into());
            }
        }
    }
    (code, v)
}

#[test]
fn gateway_calls_answer_as_the_real_etcds_gateway() {
    let steps: &[(&str, &str)] = &[
        ("/v3/kv/put", r#"{"key": "Zm9v", "value": "YmFy"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v"}"#),
        ("/v3/kv/put", r#"{"value": "YmFy"}"#),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"target":"CREATE","key":"Zm9v","createRevision":"2"}],"success":[{"requestPut":{"key":"Zm9v","value":"YmF6"}}]}"#,
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
        seen.push(steps.iter().map(|(path, body)| call(port, path, body)).collect::<Vec<_>>());
    }
    for (i, (ours, real)) in seen[0].iter().zip(&seen[1]).enumerate() {
        if i == steps.len() - 1 {
            // A body that is not the request: both refuse it as a bad request (the texts are
            // the JSON parsers' own).
            assert_eq!((ours.0, real.0), (400, 400), "{ours:?} vs {real:?}");
            continue;
        }
        assert_eq!(ours, real, "step {i}: {:?}", steps[i]);
    }
}
