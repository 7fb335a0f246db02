//! `etcdctl --help` and every command's `--help` print what etcd's etcdctl prints: the same
//! commands, flags, defaults, usage lines and descriptions, aligned the same way. The only
//! differences allowed are etcd 3.5's over the 3.4 reference: the version lines, the commands
//! and flags 3.5 added (and 3.7's `get --stream`), and `migrate`, which 3.5 removed.

use rustcd_testkit::Ctl;

/// Lines that exist in only one of etcdctl 3.4's and 3.5's help.
const ONLY_IN_ONE: &[&str] = &[
    "\tmigrate\t\t\tMigrates keys in a v2 store to a mvcc store",
    "\tauth status\t\tReturns authentication status",
    "      --count-only[=false]\t\tGet only the count",
    "      --progress-notify[=false]\tget periodic watch progress notification from server",
    "      --bump-revision=0\t\t\t\t\t\tHow much to increase the latest revision after restore",
    // etcd 3.7's `get --stream` (RangeStream).
    "      --stream[=false]\t\t\tUse the RangeStream RPC",
    "      --mark-compacted[=false]\t\t\t\t\tMark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)",
];

fn help(ctl: Ctl, args: &[&str]) -> String {
    let out = ctl.command("127.0.0.1:1").args(args).output().expect("run etcdctl --help");
    assert!(out.status.success(), "etcdctl {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The help text with the version lines and the 3.4/3.5 differences taken out.
fn normalised(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().filter(|l| !ONLY_IN_ONE.contains(l)).collect();
    for (i, l) in lines.clone().iter().enumerate() {
        if (*l == "VERSION:" || *l == "API VERSION:") && i + 1 < lines.len() {
            lines[i + 1] = "\t<version>";
        }
    }
    lines.join("\n")
}

/// The `COMMANDS:` section of the top-level help: each command path.
fn commands(top: &str) -> Vec<String> {
    top.split("COMMANDS:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .map(|block| block.lines().filter_map(|l| l.trim_start().split('\t').next()).map(str::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn every_help_text_matches_etcdctl() {
    let real_top = help(Ctl::Real, &["--help"]);
    let our_top = help(Ctl::Ours, &["--help"]);
    let mut diffs = Vec::new();
    if normalised(&real_top) != normalised(&our_top) {
        diffs.push(format!("etcdctl --help:\n--- real\n{real_top}\n--- ours\n{our_top}"));
    }
    let real_cmds: Vec<String> = commands(&real_top).into_iter().filter(|c| c != "migrate").collect();
    assert!(real_cmds.len() > 40, "the reference lists its commands: {real_cmds:?}");
    assert_eq!(commands(&our_top).into_iter().filter(|c| c != "auth status").collect::<Vec<_>>(), real_cmds);
    for cmd in &real_cmds {
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.push("--help");
        let (real, ours) = (help(Ctl::Real, &args), help(Ctl::Ours, &args));
        if normalised(&real) != normalised(&ours) {
            diffs.push(format!("etcdctl {cmd} --help:\n--- real\n{real}\n--- ours\n{ours}"));
        }
    }
    // `etcdctl help <command>` is the command's --help.
    assert_eq!(help(Ctl::Ours, &["help", "lease", "grant"]), help(Ctl::Ours, &["lease", "grant", "--help"]));
    assert!(diffs.is_empty(), "{} help texts differ:\n{}", diffs.len(), diffs.join("\n"));
}
