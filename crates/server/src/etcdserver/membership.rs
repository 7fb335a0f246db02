//! Cluster membership (etcd's `membership.RaftCluster`): members with their names and URLs,
//! changed only by applying committed raft entries and stored in the backend with them, so
//! that a snapshot carries it and a restart finds it.

use std::sync::RwLock;

use prost::Message;
use rustcd_api::etcdserverpb::Member;
use rustcd_api::membershippb::{ClusterMemberAttrSetRequest, DowngradeInfoSetRequest};
use rustcd_api::rustcdpb::{StoredMember, StoredMembers};
use rustcd_mvcc::{KvStore, WriteTxn};
use rustcd_raft::eraftpb::{ConfChange, ConfChangeType};
use rustcd_schema::member::{ConfChangeContext, MemberJson};

/// Where the backend keeps the membership (`rustcd_schema::meta`).
const META_MEMBERS: &str = rustcd_schema::meta::MEMBERS;

pub struct Membership {
    inner: RwLock<StoredMembers>,
    /// The cluster version the cluster agreed on, once one was applied.
    version: RwLock<Option<String>>,
    /// Whether a downgrade is enabled (etcd 3.5's downgrade state).
    downgrade_enabled: std::sync::atomic::AtomicBool,
    /// Told every member list after a change: the peer transport's routes follow it, so the
    /// membership is the one owner of where each member is reached.
    follow: Follow,
}

/// What follows the member list (the peer transport's routes).
pub type Follow = Box<dyn Fn(&[StoredMember]) + Send + Sync>;

/// What applying a conf change did to the member list.
pub enum Change {
    Added(StoredMember),
    Removed(u64),
    Promoted(u64),
    Ignored,
}

impl Membership {
    /// The membership stored in the backend, if any.
    pub fn load(store: &KvStore) -> Option<StoredMembers> {
        let bytes = store.meta(META_MEMBERS).ok().flatten()?;
        StoredMembers::decode(bytes.as_slice()).ok()
    }

    pub fn new(initial: StoredMembers, follow: Follow) -> Self {
        follow(&initial.members);
        Membership {
            inner: RwLock::new(initial),
            version: RwLock::new(None),
            downgrade_enabled: Default::default(),
            follow,
        }
    }

    /// The cluster version and downgrade state stored in the backend, if any.
    pub fn load_version(&self, store: &KvStore) {
        let v = store.meta(rustcd_schema::meta::CLUSTER_VERSION).ok().flatten();
        let v = v.and_then(|b| String::from_utf8(b).ok());
        if let Some(v) = &v {
            // etcd logs these again as it recovers the version on a restart.
            tracing::info!(cluster_version = %short_version(v), "set initial cluster version");
            tracing::info!(cluster_version = %short_version(v), "enabled capabilities for version");
        }
        *self.version.write().unwrap_or_else(|p| p.into_inner()) = v;
        let d = store.meta(rustcd_schema::meta::DOWNGRADE).ok().flatten();
        let enabled = d.and_then(|b| DowngradeInfoSetRequest::decode(b.as_slice()).ok()).is_some_and(|d| d.enabled);
        self.downgrade_enabled.store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a downgrade is enabled (what `/downgrade/enabled` answers).
    pub fn downgrade_enabled(&self) -> bool {
        self.downgrade_enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cluster version applied last (etcd's `RaftCluster.Version`).
    pub fn cluster_version(&self) -> Option<String> {
        self.version.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies the cluster version the leader set (etcd's `SetVersion`, with its log lines).
    pub fn apply_cluster_version(&self, v: &str, w: &mut WriteTxn) {
        let mut cur = self.version.write().unwrap_or_else(|p| p.into_inner());
        match cur.as_deref() {
            None => tracing::info!(cluster_version = %short_version(v), "set initial cluster version"),
            Some(old) if old != v => {
                tracing::info!(from = %short_version(old), to = %short_version(v), "updated cluster version")
            }
            Some(_) => {}
        }
        if cur.as_deref() != Some(v) {
            tracing::info!(cluster_version = %short_version(v), "enabled capabilities for version");
        }
        *cur = Some(v.to_string());
        w.put_meta(rustcd_schema::meta::CLUSTER_VERSION, v.as_bytes());
    }

    /// Applies the cluster's downgrade state (etcd 3.5's `DowngradeInfoSet`).
    pub fn apply_downgrade(&self, d: &DowngradeInfoSetRequest, w: &mut WriteTxn) {
        tracing::info!(enabled = d.enabled, target_version = %d.ver, "updated the cluster's downgrade state");
        self.downgrade_enabled.store(d.enabled, std::sync::atomic::Ordering::Relaxed);
        w.put_meta(rustcd_schema::meta::DOWNGRADE, &d.encode_to_vec());
    }

    /// Re-reads the membership after the backend was replaced by a snapshot.
    pub fn reload(&self, store: &KvStore) {
        self.load_version(store);
        if let Some(m) = Self::load(store) {
            (self.follow)(&m.members);
            *self.write() = m;
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, StoredMembers> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, StoredMembers> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stored(&self) -> Vec<StoredMember> {
        self.read().members.clone()
    }

    pub fn get(&self, id: u64) -> Option<StoredMember> {
        self.read().members.iter().find(|m| m.id == id).cloned()
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.read().removed.contains(&id)
    }

    /// Members as the API returns them, ordered by ID as etcd orders them.
    pub fn list(&self) -> Vec<Member> {
        let mut out: Vec<Member> = self.read().members.iter().map(to_api).collect();
        out.sort_by_key(|m| m.id);
        out
    }

    fn save(&self, w: &mut WriteTxn, m: &StoredMembers) {
        w.put_meta(META_MEMBERS, &m.encode_to_vec());
    }

    /// Applies a committed configuration change inside the apply batch.
    pub fn apply_conf_change(&self, cc: &ConfChange, w: &mut WriteTxn) -> Change {
        let ctx = context_member(&cc.context);
        let mut m = self.write();
        let change = match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let learner = cc.get_change_type() == ConfChangeType::AddLearnerNode;
                match m.members.iter_mut().find(|x| x.id == cc.node_id) {
                    Some(existing) if existing.is_learner && !learner => {
                        existing.is_learner = false;
                        Change::Promoted(cc.node_id)
                    }
                    Some(_) => Change::Ignored,
                    None => {
                        let member = StoredMember { id: cc.node_id, is_learner: learner, ..ctx };
                        m.members.push(member.clone());
                        Change::Added(member)
                    }
                }
            }
            ConfChangeType::RemoveNode => {
                let before = m.members.len();
                m.members.retain(|x| x.id != cc.node_id);
                if !m.removed.contains(&cc.node_id) {
                    m.removed.push(cc.node_id);
                }
                if m.members.len() < before { Change::Removed(cc.node_id) } else { Change::Ignored }
            }
        };
        let snapshot = m.clone();
        drop(m);
        self.save(w, &snapshot);
        (self.follow)(&snapshot.members);
        // etcd's lines, which log-based tooling watches for membership changes
        match &change {
            Change::Added(member) if member.is_learner => tracing::info!(
                added_peer_id = %format!("{:x}", member.id), added_peer_peer_urls = ?member.peer_urls,
                added_peer_is_learner = true, "added member"
            ),
            Change::Added(member) => tracing::info!(
                added_peer_id = %format!("{:x}", member.id), added_peer_peer_urls = ?member.peer_urls, "added member"
            ),
            Change::Promoted(id) => tracing::info!(promoted_member_id = %format!("{id:x}"), "promote member"),
            Change::Removed(id) => tracing::info!(removed_remote_peer_id = %format!("{id:x}"), "removed member"),
            _ => {}
        }
        change
    }

    /// Applies new peer URLs of a member (etcd's UpdateNode conf change).
    pub fn apply_update(&self, id: u64, peer_urls: Vec<String>, w: &mut WriteTxn) -> Option<StoredMember> {
        let mut m = self.write();
        let member = m.members.iter_mut().find(|x| x.id == id)?;
        member.peer_urls = peer_urls;
        let updated = member.clone();
        tracing::info!(
            updated_remote_peer_id = %format!("{id:x}"), updated_remote_peer_peer_urls = ?updated.peer_urls,
            "updated member"
        );
        let snapshot = m.clone();
        drop(m);
        self.save(w, &snapshot);
        (self.follow)(&snapshot.members);
        Some(updated)
    }

    /// Applies a member's published name and client URLs.
    pub fn apply_attributes(&self, a: &ClusterMemberAttrSetRequest, w: &mut WriteTxn) {
        let mut m = self.write();
        let Some(member) = m.members.iter_mut().find(|x| x.id == a.member_id) else {
            return;
        };
        let attrs = a.member_attributes.clone().unwrap_or_default();
        member.name = attrs.name;
        member.client_urls = attrs.client_urls;
        let snapshot = m.clone();
        drop(m);
        self.save(w, &snapshot);
    }
}

/// `3.5` of `3.5.0`: a cluster version as etcd's log lines print it.
fn short_version(v: &str) -> &str {
    v.rsplit_once('.').map_or(v, |(major_minor, _)| major_minor)
}

/// The member a conf change's context names: etcd's member JSON (earlier rustcd logs hold a
/// `StoredMember`, read too: JSON starts with `{`, which no StoredMember encoding does).
pub fn context_member(context: &[u8]) -> StoredMember {
    match ConfChangeContext::parse(context) {
        Ok(c) => from_json(c.member),
        Err(_) => StoredMember::decode(context).unwrap_or_default(),
    }
}

/// `m` in etcd's member JSON, as a conf change adding it carries it (and a new cluster's first
/// entries, and the members bucket).
pub fn member_json(m: &StoredMember) -> MemberJson {
    MemberJson {
        id: m.id,
        peer_urls: m.peer_urls.clone(),
        is_learner: m.is_learner,
        name: m.name.clone(),
        client_urls: m.client_urls.clone(),
    }
}

/// A member from etcd's JSON.
pub fn from_json(m: MemberJson) -> StoredMember {
    StoredMember {
        id: m.id,
        name: m.name,
        peer_urls: m.peer_urls,
        client_urls: m.client_urls,
        is_learner: m.is_learner,
    }
}

/// The context of a conf change that promotes learner `id` (etcd's `ConfigChangeContext` with
/// `isPromote`): the member with its peer URLs, a voter now.
pub fn promote_context(id: u64, peer_urls: Vec<String>) -> String {
    ConfChangeContext { member: MemberJson { id, peer_urls, ..Default::default() }, is_promote: true }.to_json()
}

pub fn to_api(m: &StoredMember) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}
