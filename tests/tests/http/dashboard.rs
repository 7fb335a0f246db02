//! The live dashboard in a real browser: Debian's Chromium, driven headless through
//! chromedriver's WebDriver HTTP API (both installed by `scripts/test.sh`), loads `/dashboard`
//! from a follower of a 3-member cluster and shows the members with the leader, keys with
//! their revision history, and a live watch feed; after the leader is killed, it shows the new
//! leader and the old one unreachable. Screenshots go to `target/test-artifacts/dashboard/`.

use std::io::{Read, Write};
use std::time::Duration;

use rustcd_testkit::{Cluster, Server, etcdctl, free_port, leader_index, probe, wait_for};
use serde_json::{Value, json};

/// A Chromium session through chromedriver; both stop on drop.
struct Browser {
    driver: std::process::Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver (scripts/test.sh installs Debian's chromium-driver)");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser { driver, port, session: String::new(), _profile: profile };
        wait_for("chromedriver ready", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        // The flags a closed machine needs: no sandbox (root), no background connections.
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1400,1000".into(),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let v = b.call("POST", "/session", &caps);
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        b
    }

    /// One WebDriver command: its `value`.
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = if method == "POST" { body.to_string() } else { String::new() };
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect chromedriver");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        // chromedriver keeps the connection open: read the head, then Content-Length bytes.
        let mut raw = Vec::new();
        let mut buf = [0u8; 65536];
        let body_start = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = s.read(&mut buf).expect("read chromedriver");
            assert!(n > 0, "chromedriver closed the connection");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..body_start]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while raw.len() < body_start + len {
            let n = s.read(&mut buf).expect("read chromedriver");
            assert!(n > 0, "chromedriver closed the connection");
            raw.extend_from_slice(&buf[..n]);
        }
        let v: Value = serde_json::from_slice(&raw[body_start..body_start + len]).unwrap_or(Value::Null);
        v.get("value").cloned().unwrap_or(v)
    }

    fn session_call(&self, method: &str, path: &str, body: &Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn goto(&self, url: &str) {
        self.session_call("POST", "/url", &json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page: what it returns.
    fn eval(&self, script: &str) -> Value {
        self.session_call("POST", "/execute/sync", &json!({ "script": script, "args": [] }))
    }

    /// Polls `script` until `ok` holds for what it returns.
    fn wait(&self, what: &str, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, Duration::from_secs(30), || {
            let v = self.eval(script);
            ok(&v).then_some(v)
        })
    }

    fn screenshot(&self, name: &str) -> std::path::PathBuf {
        use base64::Engine as _;
        let v = self.session_call("GET", "/screenshot", &Value::Null);
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).expect("png");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/dashboard");
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(name);
        std::fs::write(&path, &png).expect("write screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            self.call("DELETE", &format!("/session/{}", self.session), &Value::Null);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const LEADER: &str = "return document.getElementById('leader').dataset.leaderId";
const ROLES: &str = "return [...document.querySelectorAll('#members tbody tr')].map(r => r.id + '=' + r.dataset.role)";

#[test]
fn dashboard_shows_the_cluster_live_and_the_new_leader_after_a_kill() {
    let mut c = Cluster::start_with(Server::Rustcd, 3, &["--enable-dashboard"]);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    for v in ["v1", "v2", "v3"] {
        assert!(etcdctl(&[&ep], &["put", "app/config", v]).status.success());
    }
    assert!(etcdctl(&[&ep], &["put", "app/name", "demo"]).status.success());
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    let leader_id = probe::status(&c.members[leader].endpoint()).map(|s| format!("{:x}", s.2)).unwrap_or_default();
    let follower = (leader + 1) % 3;
    let b = Browser::start();
    b.goto(&format!("{}/dashboard", c.members[follower].client_url()));

    // Members, with the leader named.
    b.wait("the page names the leader", LEADER, |v| v.as_str() == Some(&leader_id));
    let roles = b.wait("three members", ROLES, |v| v.as_array().is_some_and(|a| a.len() == 3));
    let leaders =
        roles.as_array().map_or(0, |a| a.iter().filter(|r| r.as_str().is_some_and(|r| r.ends_with("=leader"))).count());
    assert_eq!(leaders, 1, "{roles}");

    // Keys, and one key's history.
    b.wait("the key list", "return [...document.querySelectorAll('#keys li')].map(l => l.dataset.key)", |v| {
        v.as_array().is_some_and(|a| a.iter().any(|k| k == "app/config") && a.iter().any(|k| k == "app/name"))
    });
    b.eval("document.querySelector('#keys li[data-key=\"app/config\"]').click(); return true");
    let history = b.wait(
        "app/config's history",
        "return [...document.querySelectorAll('#history tbody tr')].map(r => r.cells[2] ? r.cells[2].textContent : '')",
        |v| v.as_array().is_some_and(|a| a.len() == 3),
    );
    assert_eq!(history, json!(["v3", "v2", "v1"]), "newest first");

    // The watch feed shows a write made after the page opened.
    assert!(etcdctl(&[&ep], &["put", "app/live", "hello"]).status.success());
    b.wait("the watch feed", "return document.getElementById('feed').textContent", |v| {
        v.as_str().is_some_and(|t| t.contains("PUT app/live = hello"))
    });
    // The rate charts have figures.
    b.wait("rates", "return document.getElementById('v-puts').textContent", |v| v.as_str() != Some("–"));
    let before = b.screenshot("1-cluster.png");

    // Kill the leader: the page moves to the new one and shows the old one unreachable.
    c.kill(leader, libc::SIGKILL);
    let new_leader = b.wait("the page names a new leader", LEADER, |v| {
        v.as_str().is_some_and(|id| !id.is_empty() && id != leader_id)
    });
    b.wait("the old leader unreachable", ROLES, |v| {
        v.as_array().is_some_and(|a| a.iter().any(|r| r.as_str() == Some(&format!("member-{leader_id}=unreachable"))))
    });
    let survivors: Vec<String> = c
        .members
        .iter()
        .filter(|m| m.is_running())
        .filter_map(|m| probe::status(&m.endpoint()).map(|s| format!("{:x}", s.2)))
        .collect();
    assert!(survivors.iter().all(|l| Some(l.as_str()) == new_leader.as_str()), "{survivors:?} vs {new_leader}");
    let after = b.screenshot("2-new-leader.png");
    assert_ne!(std::fs::read(before).ok(), std::fs::read(after).ok());
}

#[test]
fn dashboard_asks_for_a_sign_in_when_auth_is_on() {
    let c = Cluster::start_with(Server::Rustcd, 1, &["--enable-dashboard"]);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    for args in [&["user", "add", "root:secret"][..], &["role", "add", "root"], &["user", "grant-role", "root", "root"]]
    {
        assert!(etcdctl(&[&ep], args).status.success(), "{args:?}");
    }
    assert!(etcdctl(&[&ep], &["auth", "enable"]).status.success());
    assert!(etcdctl(&[&ep], &["--user", "root:secret", "put", "private", "x"]).status.success());
    let b = Browser::start();
    b.goto(&format!("{}/dashboard", c.members[0].client_url()));
    let shown = "return [document.getElementById('login').hidden, document.getElementById('main').hidden]";
    b.wait("the sign-in form, nothing else", shown, |v| *v == json!([false, true]));
    // A wrong password is refused with etcd's words; the right one opens the page.
    b.eval("document.getElementById('user').value = 'root'; document.getElementById('password').value = 'wrong'; document.querySelector('#login-form button').click(); return true");
    b.wait("a refusal", "return document.getElementById('error').textContent", |v| {
        v.as_str().is_some_and(|t| t.contains("authentication failed"))
    });
    b.eval("document.getElementById('password').value = 'secret'; document.querySelector('#login-form button').click(); return true");
    b.wait("the page, signed in", shown, |v| *v == json!([true, false]));
    b.wait(
        "keys read with the user's token",
        "return [...document.querySelectorAll('#keys li')].map(l => l.dataset.key)",
        |v| v.as_array().is_some_and(|a| a.iter().any(|k| k == "private")),
    );
    b.screenshot("3-signed-in.png");
}
