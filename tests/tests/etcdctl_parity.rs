//! The real etcdctl prints the same against rustcd as against the real etcd: one scripted
//! session run against a fresh single-node server of each kind, compared line by line
//! (cluster and member IDs masked).

use std::time::Duration;

use rustcd_tests::{Cluster, Printed, Server, etcdctl_watch};

/// One step of the session: etcdctl arguments and optional stdin.
enum Step {
    Ctl(&'static [&'static str]),
    CtlStdin(&'static [&'static str], &'static str),
    /// A watch that is stopped once it printed this many lines.
    Watch(&'static [&'static str], usize),
}
use Step::*;

const TXN_SUCCESS: &str = "value(\"foo\") = \"bar2\"\n\nput txnkey yes\nget foo\n\nput txnkey no\n\n";
const TXN_FAILURE: &str = "mod(\"foo\") > \"100\"\n\nput txnkey yes\n\ndel txnkey\nget txnkey\n\n";

fn session() -> Vec<Step> {
    vec![
        Ctl(&["put", "foo", "bar"]),
        Ctl(&["put", "foo", "bar2", "--prev-kv"]),
        Ctl(&["get", "foo"]),
        Ctl(&["get", "foo", "-w", "json"]),
        Ctl(&["get", "foo", "-w", "fields"]),
        Ctl(&["get", "foo", "-w", "table"]),
        Ctl(&["get", "foo", "--print-value-only"]),
        Ctl(&["put", "foo/a", "1"]),
        Ctl(&["put", "foo/c", "3"]),
        Ctl(&["put", "foo/b", "2"]),
        Ctl(&["put", "foo/a", "11"]),
        Ctl(&["get", "foo", "--prefix"]),
        Ctl(&["get", "foo", "--prefix", "--keys-only"]),
        Ctl(&["get", "foo", "--prefix", "--limit", "2"]),
        Ctl(&["get", "foo", "--prefix", "--limit", "2", "-w", "json"]),
        Ctl(&["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"]),
        Ctl(&["get", "foo", "--prefix", "--sort-by=VERSION"]),
        Ctl(&["get", "foo", "--prefix", "--sort-by=VALUE", "--order=DESCEND"]),
        Ctl(&["get", "foo", "--prefix", "--sort-by=CREATE", "--order=ASCEND", "-w", "json"]),
        Ctl(&["get", "foo", "--prefix", "--order=DESCEND", "--limit", "1"]),
        Ctl(&["get", "foo", "--rev=2"]),
        Ctl(&["get", "foo/", "--from-key"]),
        Ctl(&["get", "foo/a", "foo/c"]),
        Ctl(&["get", "missing"]),
        Ctl(&["get", "missing", "-w", "json"]),
        Watch(&["watch", "foo", "--prefix", "--rev=3", "--prev-kv"], 19),
        Watch(&["watch", "foo", "--rev=2", "-w", "json"], 1),
        CtlStdin(&["txn"], TXN_SUCCESS),
        CtlStdin(&["txn", "-w", "json"], TXN_FAILURE),
        CtlStdin(&["txn"], TXN_FAILURE),
        Ctl(&["del", "foo/a"]),
        Ctl(&["del", "missing"]),
        Ctl(&["del", "foo/", "--prefix", "--prev-kv"]),
        Ctl(&["get", "foo", "--prefix", "-w", "json"]),
        Watch(&["watch", "foo/", "--prefix", "--rev=10", "-w", "json"], 1),
        Watch(&["watch", "foo/", "--prefix", "--rev=10", "--prev-kv"], 15),
        Ctl(&["put", "k", "v", "--lease=1234"]),
        Ctl(&["put", "nokey", "--ignore-value"]),
        Ctl(&["put", "foo", "--ignore-value"]),
        Ctl(&["get", "foo", "-w", "json"]),
        Ctl(&["get", "foo", "--rev=1000"]),
        Ctl(&["compaction", "4"]),
        Ctl(&["compaction", "3"]),
        Ctl(&["get", "foo", "--rev=2"]),
        Ctl(&["get", "foo", "--rev=4"]),
        Watch(&["watch", "foo", "--rev=2"], 1),
        Ctl(&["del", "", "--from-key"]),
        Ctl(&["get", "", "--from-key", "-w", "json"]),
    ]
}

fn run_session(server: Server) -> Vec<(String, Printed)> {
    let c = Cluster::start_with(server, 1, &[]);
    let ep = c.members[0].endpoint();
    session()
        .into_iter()
        .map(|step| match step {
            Ctl(args) => (args.join(" "), Printed::of(&c.etcdctl(0, args))),
            CtlStdin(args, input) => {
                (format!("{} <<< {input:?}", args.join(" ")), Printed::of(&c.etcdctl_stdin(0, args, input)))
            }
            Watch(args, lines) => (args.join(" "), etcdctl_watch(&ep, args, lines, Duration::from_secs(10))),
        })
        .collect()
}

#[test]
fn etcdctl_prints_the_same_against_rustcd_and_etcd() {
    let ours = run_session(Server::Rustcd);
    let theirs = run_session(Server::Etcd);
    let mut diffs = Vec::new();
    for ((cmd, a), (_, b)) in ours.iter().zip(&theirs) {
        if a != b {
            diffs.push(format!("$ etcdctl {cmd}\n  rustcd: {a:?}\n  etcd:   {b:?}"));
        }
    }
    assert!(diffs.is_empty(), "{} of {} commands differ:\n{}", diffs.len(), ours.len(), diffs.join("\n"));
    // The session really exercised the server: values, errors and watch events are there.
    let all: String = ours.iter().map(|(_, p)| p.stdout.clone()).collect();
    assert!(all.contains("bar2") && all.contains("PUT") && all.contains("DELETE"));
    assert!(ours.iter().any(|(_, p)| p.errors == ["Error: etcdserver: mvcc: required revision has been compacted"]));
}
