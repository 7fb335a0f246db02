//! Authentication and RBAC, as etcd has them: one scripted etcdctl session (users, roles,
//! permissions, `auth enable`, every kind of request by root, by a user with some permissions,
//! by no one and with a wrong password) run against the real etcd and against rustcd, with the
//! real etcdctl and with ours, compared line by line.

use std::time::Duration;

use rustcd_testkit::{Cluster, Ctl, Printed, Server, ctl_watch};

enum Step {
    Run(&'static [&'static str]),
    RunStdin(&'static [&'static str], &'static str),
    Watch(&'static [&'static str], usize),
}
use Step::*;

const ROOT: &str = "--user=root:rootpw";
const U: &str = "--user=u:upw";

/// A txn `u` may run (it reads and writes k1) and one it may not (it writes k2).
const TXN_OK: &str = "value(\"k1\") = \"v1\"\n\nput k1 v2\n\nget k1\n\n";
const TXN_DENIED: &str = "value(\"k1\") = \"v2\"\n\nput k2 x\n\n\n";

fn session() -> Vec<Step> {
    vec![
        // Before auth is on: management needs no one, enabling needs root.
        Run(&["auth", "enable"]),
        Run(&["user", "add", "u:upw"]),
        Run(&["user", "add", "u:again"]),
        Run(&["role", "add", "r"]),
        Run(&["role", "add", "r"]),
        Run(&["role", "grant-permission", "r", "readwrite", "k1"]),
        Run(&["role", "grant-permission", "r", "read", "r/", "--prefix"]),
        Run(&["role", "grant-permission", "r", "write", "w1", "w3"]),
        Run(&["role", "grant-permission", "r", "read", "z", "--from-key"]),
        Run(&["role", "grant-permission", "missing", "read", "x"]),
        Run(&["role", "get", "r"]),
        Run(&["user", "grant-role", "u", "r"]),
        Run(&["user", "grant-role", "u", "missing"]),
        Run(&["user", "grant-role", "nobody", "r"]),
        Run(&["user", "get", "u"]),
        Run(&["user", "list"]),
        Run(&["role", "list"]),
        Run(&["put", "r/a", "1"]),
        Run(&["user", "add", "root:rootpw"]),
        // No root role yet: etcdctl's `auth enable` makes it and grants it to root.
        Run(&["auth", "enable"]),
        Run(&["auth", "enable", ROOT]),
        // Nobody, a wrong password.
        Run(&["put", "k1", "v0"]),
        Run(&["get", "k1"]),
        Run(&["put", "k1", "v0", "--user=u:wrong"]),
        Run(&["put", "k1", "v0", "--user=ghost:pw"]),
        // Root may do everything.
        Run(&["put", "k1", "v1", ROOT]),
        Run(&["put", "k2", "v1", ROOT]),
        Run(&["get", "", "--from-key", ROOT]),
        // u: its permissions, and nothing else.
        Run(&["get", "k1", U]),
        Run(&["put", "k1", "v1", U]),
        Run(&["put", "k1", "v1", "--prev-kv", U]),
        Run(&["get", "k2", U]),
        Run(&["put", "k2", "x", U]),
        Run(&["del", "k1", "--prev-kv", U]),
        Run(&["put", "k1", "v1", U]),
        Run(&["get", "r/", "--prefix", U]),
        Run(&["get", "r", "--prefix", U]),
        Run(&["put", "r/a", "2", U]),
        Run(&["put", "w1", "x", U]),
        Run(&["put", "w2", "x", U]),
        Run(&["put", "w3", "x", U]),
        Run(&["del", "w1", "w3", U]),
        Run(&["get", "w1", U]),
        Run(&["get", "zz", U]),
        Run(&["get", "z", "--from-key", U]),
        Run(&["get", "y", "--from-key", U]),
        RunStdin(&["txn", U], TXN_OK),
        RunStdin(&["txn", U], TXN_DENIED),
        Watch(&["watch", "k2", U], 1),
        Run(&["user", "get", "u", U]),
        Run(&["role", "get", "r", U]),
        Run(&["user", "get", "root", U]),
        Run(&["user", "list", U]),
        Run(&["role", "list", U]),
        Run(&["user", "add", "v:vpw", U]),
        Run(&["auth", "disable", U]),
        Run(&["member", "add", "new", "--peer-urls=http://127.0.0.1:1", U]),
        Run(&["defrag", U]),
        // Root's own rules.
        Run(&["user", "delete", "root", ROOT]),
        Run(&["user", "revoke-role", "root", "root", ROOT]),
        Run(&["role", "delete", "root", ROOT]),
        Run(&["user", "revoke-role", "u", "missing", ROOT]),
        Run(&["role", "revoke-permission", "r", "nokey", ROOT]),
        // Changes reach u at once: a revoked permission, a changed password, a deleted user.
        Run(&["role", "revoke-permission", "r", "k1", ROOT]),
        Run(&["get", "k1", U]),
        Run(&["role", "grant-permission", "r", "read", "k1", ROOT]),
        Run(&["get", "k1", U]),
        Run(&["user", "passwd", "u", "--interactive=false", ROOT]),
        Run(&["get", "k1", U]),
        Run(&["get", "k1", "--user=u:newpw"]),
        Run(&["role", "delete", "r", ROOT]),
        Run(&["user", "get", "u", ROOT]),
        Run(&["user", "delete", "u", ROOT]),
        Run(&["get", "k1", "--user=u:newpw"]),
        Run(&["auth", "disable", ROOT]),
        Run(&["put", "k1", "free"]),
        Run(&["user", "list"]),
    ]
}

fn run_session(server: Server, ctl: Ctl) -> Vec<(String, Printed)> {
    let c = Cluster::start_with(server, 1, &[]);
    let ep = c.members[0].endpoint();
    session()
        .into_iter()
        .map(|step| match step {
            Run(args) => {
                // `user passwd` reads the new password from stdin.
                let stdin = args.contains(&"passwd").then_some("newpw\n");
                (args.join(" "), Printed::of(&ctl.run(&ep, args, stdin)))
            }
            RunStdin(args, input) => {
                (format!("{} <<< {input:?}", args.join(" ")), Printed::of(&ctl.run(&ep, args, Some(input))))
            }
            Watch(args, lines) => (args.join(" "), ctl_watch(ctl, &ep, args, lines, Duration::from_secs(5))),
        })
        .collect()
}

#[test]
fn auth_sessions_print_what_they_print_with_etcd() {
    let reference = run_session(Server::Etcd, Ctl::Real);
    let denied = reference.iter().filter(|(_, p)| p.errors.iter().any(|e| e.contains("permission denied"))).count();
    assert!(denied >= 10, "the session exercises refusals: {denied}");
    let mut diffs = Vec::new();
    for (name, server, ctl) in
        [("real etcdctl, rustcd", Server::Rustcd, Ctl::Real), ("our etcdctl, rustcd", Server::Rustcd, Ctl::Ours)]
    {
        let got = run_session(server, ctl);
        for ((cmd, a), (_, b)) in got.iter().zip(&reference) {
            if a != b {
                diffs.push(format!("[{name}] $ etcdctl {cmd}\n  got:       {a:?}\n  reference: {b:?}"));
            }
        }
    }
    assert!(diffs.is_empty(), "{} commands differ:\n{}", diffs.len(), diffs.join("\n"));
}
