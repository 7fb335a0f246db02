//! Our etcdctl's longer-running tools against rustcd: `check datascale` passes, `check perf`
//! reports as etcd's does, and both clean up after themselves; `make-mirror` copies a prefix and then
//! follows every change.

use std::time::Duration;

use rustcd_testkit::{Cluster, Ctl, stdout, wait_for};

#[test]
fn check_datascale_and_perf_pass_and_clean_up() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();

    let out = Ctl::Ours.run(&ep, &["check", "datascale", "--auto-compact"], None);
    let text = stdout(&out);
    assert!(out.status.success(), "datascale failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with(
        "Start data scale check for work load [10000 key-value pairs, 1024 bytes per key-value, 50 concurrent clients]."
    ));
    assert!(text.contains("PASS: Approximate system memory used : "), "{text}");
    assert!(text.contains("Compacted with revision "), "{text}");

    // `check perf` judges this machine's speed against etcd's thresholds; a shared CI machine
    // may miss one (speed is the benchmarks' business). What must hold is etcd's report: one
    // verdict per criterion, and an overall verdict and exit code that follow from them.
    let out = Ctl::Ours.run(&ep, &["check", "perf"], None);
    let text = stdout(&out);
    let mut all_pass = true;
    for criterion in ["Throughput", "Slowest request", "Stddev"] {
        let line =
            text.lines().find(|l| l.contains(criterion)).unwrap_or_else(|| panic!("{criterion} missing: {text}"));
        assert!(line.starts_with("PASS: ") || line.starts_with("FAIL: "), "{line}");
        all_pass &= line.starts_with("PASS: ");
    }
    let (verdict, code) = if all_pass { ("\nPASS\n", Some(0)) } else { ("\nFAIL\n", Some(1)) };
    assert!(text.ends_with(verdict), "{text}");
    assert_eq!(out.status.code(), code, "{text}");

    // Nothing is left behind, and a busy prefix is refused.
    let left = Ctl::Ours.run(&ep, &["get", "/etcdctl-check", "--prefix", "--keys-only"], None);
    assert_eq!(stdout(&left), "");
    assert!(Ctl::Ours.run(&ep, &["put", "/etcdctl-check-perf/x", "v"], None).status.success());
    let refused = Ctl::Ours.run(&ep, &["check", "perf"], None);
    assert_eq!(refused.status.code(), Some(3));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("prefix \"/etcdctl-check-perf/\" has keys"), "{err}");
}

#[test]
fn make_mirror_copies_a_prefix_then_follows_changes() {
    let src = Cluster::start(1);
    let dst = Cluster::start(1);
    src.wait_writable(0);
    dst.wait_writable(0);
    let (s, d) = (src.members[0].endpoint(), dst.members[0].endpoint());
    for (k, v) in [("app/a", "1"), ("app/b", "2"), ("other", "x")] {
        assert!(Ctl::Ours.run(&s, &["put", k, v], None).status.success());
    }
    let mut mirror = Ctl::Ours.spawn(&s, &["make-mirror", "--prefix=app/", "--dest-prefix=copy/", &d]);
    let get_all = || stdout(&Ctl::Ours.run(&d, &["get", "copy/", "--prefix"], None));
    wait_for("the base copy", Duration::from_secs(10), || (get_all() == "copy/a\n1\ncopy/b\n2\n").then_some(()));

    Ctl::Ours.run(&s, &["put", "app/c", "3"], None);
    Ctl::Ours.run(&s, &["del", "app/a"], None);
    Ctl::Ours.run(&s, &["txn"], Some("\nput app/b 22\nput app/d 4\n\n\n"));
    Ctl::Ours.run(&s, &["put", "other", "y"], None);
    wait_for("the changes to follow", Duration::from_secs(10), || {
        (get_all() == "copy/b\n22\ncopy/c\n3\ncopy/d\n4\n").then_some(())
    });
    let _ = mirror.kill();
    let _ = mirror.wait();
}

/// `watch -i`: watchers added from stdin lines, progress on request, the end of stdin ends it.
/// Run with both etcdctls so the expectations are the real one's.
#[test]
fn interactive_watch_reads_commands_from_stdin() {
    use std::io::Write;
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    for ctl in [Ctl::Real, Ctl::Ours] {
        let out_path = c.dir().join(format!("iwatch-{ctl:?}.out"));
        let out = std::fs::File::create(&out_path).expect("output file");
        let mut child = ctl
            .command(&ep)
            .args(["watch", "-i"])
            .stdin(std::process::Stdio::piped())
            .stdout(out)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn etcdctl watch -i");
        let mut input = child.stdin.take().expect("stdin");
        writeln!(input, "watch iw --prefix --prev-kv").expect("write");
        writeln!(input, "frob").expect("write");
        let key = format!("iw/{ctl:?}");
        wait_for("the interactive watcher to see a put", Duration::from_secs(10), || {
            Ctl::Ours.run(&ep, &["put", &key, "v"], None);
            std::fs::read_to_string(&out_path).unwrap_or_default().contains(&format!("PUT\n{key}\nv\n")).then_some(())
        });
        writeln!(input, "progress").expect("write");
        wait_for("a progress notification", Duration::from_secs(10), || {
            std::fs::read_to_string(&out_path).unwrap_or_default().contains("progress notify: ").then_some(())
        });
        drop(input);
        let done = child.wait_with_output().expect("etcdctl exits at the end of stdin");
        let err = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(3), "{ctl:?}: {err}");
        assert!(err.contains("Invalid command frob (only support watch)"), "{ctl:?}: {err}");
        assert!(err.contains("Error: Error reading watch request line: EOF"), "{ctl:?}: {err}");
    }
}

/// A read through a member that lost its leader (its inbound peer traffic blackholed, so its
/// reads hang rather than fail) is retried on the next endpoint within the command timeout.
/// (etcdctl 3.4 may stay on the hanging member and print `context deadline exceeded`.)
#[test]
fn cluster_reads_fail_over_from_a_member_without_leader() {
    let c = Cluster::start_proxied(3, &[]);
    c.wait_writable(0);
    let leader = wait_for("a leader", Duration::from_secs(10), || rustcd_testkit::leader_index(&c));
    let cut = (leader + 1) % 3;
    assert!(Ctl::Ours.run(&c.members[leader].endpoint(), &["put", "fo", "v"], None).status.success());
    c.proxies[cut].set(rustcd_testkit::proxy::Fault::Blackhole);
    // The cut member answers reads with an error once it has no leader.
    let alone = c.members[cut].endpoint();
    wait_for("the cut-off member to refuse reads", Duration::from_secs(15), || {
        let out = Ctl::Ours.run(&alone, &["get", "fo", "--command-timeout=1s"], None);
        (!out.status.success()).then_some(())
    });
    let order = [alone.clone(), c.members[leader].endpoint()].join(",");
    let out = Ctl::Ours.run(&order, &["get", "fo"], None);
    assert_eq!(stdout(&out), "fo\nv\n", "{}", String::from_utf8_lossy(&out.stderr));
}
