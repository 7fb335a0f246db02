//! etcd 3.5's health endpoints on a live cluster, healthy and without a leader: `/livez`,
//! `/readyz` (each check also at its own path, `?verbose`, `?exclude=`), `/health`; and Go's
//! 404 for any path etcd does not serve (a probe pointed at one must fail, as against etcd).

use std::time::Duration;

use rustcd_testkit::{Cluster, Server, http_get, http_request, wait_for};

/// Status code and body of a response.
fn parts(resp: &str) -> (u16, String) {
    let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

fn get(port: u16, path: &str) -> (u16, String) {
    parts(&http_get(port, path))
}

#[test]
fn probes_answer_as_etcd_with_and_without_a_leader() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    let port = c.members[0].client_port;
    assert_eq!(get(port, "/livez"), (200, "ok\n".into()));
    assert_eq!(get(port, "/livez?verbose"), (200, "[+]serializable_read ok\nok\n".into()));
    assert_eq!(get(port, "/readyz"), (200, "ok\n".into()));
    assert_eq!(
        get(port, "/readyz?verbose"),
        (200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n".into())
    );
    assert_eq!(
        get(port, "/readyz?verbose&exclude=linearizable_read"),
        (200, "[+]data_corruption ok\n[+]serializable_read ok\nok\n".into())
    );
    assert_eq!(get(port, "/readyz/linearizable_read"), (200, "ok\n".into()));
    assert_eq!(get(port, "/health"), (200, "{\"health\":\"true\",\"reason\":\"\"}".into()));
    let post = parts(&http_request(port, "POST", "/readyz", ""));
    assert_eq!(post, (405, "Method Not Allowed\n".into()));
    let text = http_get(port, "/no/such/path");
    assert!(text.contains("text/plain; charset=utf-8"), "{text}");
    assert_eq!(parts(&text), (404, "404 page not found\n".into()));

    // Two of three members gone: no leader. Reads of the local store still work (live), the
    // cluster is not ready, and /health says why.
    c.kill(1, libc::SIGKILL);
    c.kill(2, libc::SIGKILL);
    wait_for("the leader to be lost", Duration::from_secs(15), || (get(port, "/health").0 == 503).then_some(()));
    assert_eq!(get(port, "/health"), (503, "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}".into()));
    assert_eq!(get(port, "/livez"), (200, "ok\n".into()));
    let (code, body) = get(port, "/readyz");
    assert_eq!(code, 503);
    assert!(
        body.starts_with("[+]data_corruption ok\n[+]serializable_read ok\n[-]linearizable_read failed: "),
        "{body}"
    );
    assert!(body.ends_with("\n\n"), "{body:?}");
    assert_eq!(get(port, "/readyz?exclude=linearizable_read"), (200, "ok\n".into()));
}

/// An unknown path answers 404 on the real etcd too, with the same body.
#[test]
fn unknown_paths_are_404_on_both() {
    for server in [Server::Rustcd, Server::Etcd] {
        let c = Cluster::start_with(server, 1, &[]);
        let port = c.members[0].client_port;
        assert_eq!(get(port, "/no/such/path"), (404, "404 page not found\n".into()), "{server:?}");
    }
}
