//! etcdctl parity: one scripted session run against a fresh single-node server for each
//! (etcdctl, server) pair, compared line by line (cluster and member IDs masked). The real
//! etcdctl against the real etcd is the reference; the real etcdctl against rustcd checks the
//! server, ours against etcd checks the client, ours against rustcd the whole drop-in.

use std::time::Duration;

use rustcd_testkit::{Cluster, Ctl, Printed, Server, ctl_watch};

/// One step of the session: etcdctl arguments and optional stdin.
enum Step {
    Run(&'static [&'static str]),
    RunStdin(&'static [&'static str], &'static str),
    /// A watch that is stopped once it printed this many lines.
    Watch(&'static [&'static str], usize),
}
use Step::*;

const TXN_SUCCESS: &str = "value(\"foo\") = \"bar2\"\n\nput txnkey yes\nget foo\n\nput txnkey no\n\n";
const TXN_FAILURE: &str = "mod(\"foo\") > \"100\"\n\nput txnkey yes\n\ndel txnkey\nget txnkey\n\n";

fn session() -> Vec<Step> {
    vec![
        Run(&["put", "foo", "bar"]),
        Run(&["put", "foo", "bar2", "--prev-kv"]),
        Run(&["get", "foo"]),
        Run(&["get", "foo", "-w", "json"]),
        Run(&["get", "foo", "-w", "fields"]),
        Run(&["get", "foo", "-w", "table"]),
        Run(&["get", "foo", "--print-value-only"]),
        Run(&["get", "foo", "--hex"]),
        Run(&["put", "foo", "bar3", "--prev-kv", "-w", "fields"]),
        RunStdin(&["put", "foo", "-w", "json", "--prev-kv"], "bar2"),
        Run(&["put", "foo/a", "1"]),
        Run(&["put", "foo/c", "3"]),
        Run(&["put", "foo/b", "2"]),
        Run(&["put", "foo/a", "11"]),
        Run(&["get", "foo", "--prefix"]),
        Run(&["get", "foo", "--prefix", "--keys-only"]),
        Run(&["get", "foo", "--prefix", "--limit", "2"]),
        Run(&["get", "foo", "--prefix", "--limit", "2", "-w", "json"]),
        Run(&["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"]),
        Run(&["get", "foo", "--prefix", "--sort-by=VERSION"]),
        Run(&["get", "foo", "--prefix", "--sort-by=VALUE", "--order=DESCEND"]),
        Run(&["get", "foo", "--prefix", "--sort-by=CREATE", "--order=ASCEND", "-w", "json"]),
        Run(&["get", "foo", "--prefix", "--order=DESCEND", "--limit", "1"]),
        Run(&["get", "foo", "--rev=2"]),
        Run(&["get", "foo/", "--from-key"]),
        Run(&["get", "foo/a", "foo/c"]),
        Run(&["get", "missing"]),
        Run(&["get", "missing", "-w", "json"]),
        Watch(&["watch", "foo", "--prefix", "--rev=3", "--prev-kv"], 19),
        Watch(&["watch", "foo", "--rev=2", "-w", "json"], 1),
        RunStdin(&["txn"], TXN_SUCCESS),
        RunStdin(&["txn", "-w", "json"], TXN_FAILURE),
        RunStdin(&["txn"], TXN_FAILURE),
        RunStdin(&["txn", "-w", "fields"], TXN_SUCCESS),
        Run(&["get", "foo", "--prefix", "--consistency=s", "-w", "fields"]),
        Run(&["del", "foo/a", "--prev-kv", "-w", "fields"]),
        Run(&["put", "foo/a", "11"]),
        Run(&["del", "foo/a"]),
        Run(&["del", "missing"]),
        Run(&["del", "foo/", "--prefix", "--prev-kv"]),
        Run(&["get", "foo", "--prefix", "-w", "json"]),
        Watch(&["watch", "foo/", "--prefix", "--rev=10", "-w", "json"], 1),
        Watch(&["watch", "foo/", "--prefix", "--rev=10", "--prev-kv"], 15),
        Run(&["put", "k", "v", "--lease=1234"]),
        Run(&["put", "nokey", "--ignore-value"]),
        Run(&["put", "foo", "--ignore-value"]),
        Run(&["get", "foo", "-w", "json"]),
        Run(&["get", "foo", "--rev=1000"]),
        Run(&["compaction", "4"]),
        Run(&["compaction", "3"]),
        Run(&["get", "foo", "--rev=2"]),
        Run(&["get", "foo", "--rev=4"]),
        Watch(&["watch", "foo", "--rev=2"], 1),
        Run(&["del", "", "--from-key"]),
        Run(&["get", "", "--from-key", "-w", "json"]),
    ]
}

fn run_session(server: Server, ctl: Ctl) -> Vec<(String, Printed)> {
    let c = Cluster::start_with(server, 1, &[]);
    let ep = c.members[0].endpoint();
    session()
        .into_iter()
        .map(|step| match step {
            Run(args) => (args.join(" "), Printed::of(&ctl.run(&ep, args, None))),
            RunStdin(args, input) => {
                (format!("{} <<< {input:?}", args.join(" ")), Printed::of(&ctl.run(&ep, args, Some(input))))
            }
            Watch(args, lines) => (args.join(" "), ctl_watch(ctl, &ep, args, lines, Duration::from_secs(10))),
        })
        .collect()
}

/// The commands whose output differs from the reference's, described for a failure message.
fn differences(name: &str, got: &[(String, Printed)], reference: &[(String, Printed)]) -> Vec<String> {
    got.iter()
        .zip(reference)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((cmd, a), (_, b))| format!("[{name}] $ etcdctl {cmd}\n  got:       {a:?}\n  reference: {b:?}"))
        .collect()
}

#[test]
fn etcdctl_prints_the_same_for_every_client_and_server_pair() {
    let reference = run_session(Server::Etcd, Ctl::Real);
    let mut diffs = Vec::new();
    for (name, server, ctl) in [
        ("real etcdctl, rustcd", Server::Rustcd, Ctl::Real),
        ("our etcdctl, etcd", Server::Etcd, Ctl::Ours),
        ("our etcdctl, rustcd", Server::Rustcd, Ctl::Ours),
    ] {
        let got = run_session(server, ctl);
        // The session really exercised the server: values, errors and watch events are there.
        let all: String = got.iter().map(|(_, p)| p.stdout.clone()).collect();
        assert!(all.contains("bar2") && all.contains("PUT") && all.contains("DELETE"), "[{name}] {all}");
        let compacted = ["Error: etcdserver: mvcc: required revision has been compacted"];
        assert!(got.iter().any(|(_, p)| p.errors == compacted), "[{name}] no compaction error");
        diffs.extend(differences(name, &got, &reference));
    }
    assert!(diffs.is_empty(), "{} commands differ:\n{}", diffs.len(), diffs.join("\n"));
}
