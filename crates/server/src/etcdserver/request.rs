//! A normal raft entry's request, in etcd's encoding, so that rustcd and etcd members of one
//! cluster read each other's log: an `etcdserverpb.InternalRaftRequest` (the request, and a
//! header with its ID and the user and auth revision it runs as), or a bare v2 `Request` for
//! the membership and cluster-version writes etcd 3.4 and 3.5 still make through their v2
//! store. [`encode`] writes what etcd 3.5 writes for each kind; [`decode`] reads what any etcd
//! 3.x member proposes, as etcd's `applyEntryNormal` does: an InternalRaftRequest if the bytes
//! are one, else a v2 request.

use prost::Message;
use rustcd_api::etcdserverpb::{
    AlarmRequest, CompactionRequest, DeleteRangeRequest, InternalRaftRequest, LeaseCheckpointRequest,
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, Request as V2Request, RequestHeader, TxnRequest,
};
use rustcd_api::membershippb::{Attributes, ClusterMemberAttrSetRequest, DowngradeInfoSetRequest};
use rustcd_api::rustcdpb::auth_request::Op as AuthOp;
use rustcd_auth::AuthInfo;
use rustcd_schema::member;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compaction(CompactionRequest),
    LeaseGrant(LeaseGrantRequest),
    LeaseRevoke(LeaseRevokeRequest),
    LeaseCheckpoint(LeaseCheckpointRequest),
    Alarm(AlarmRequest),
    Auth(AuthOp),
    /// A member's published name and client URLs (etcd's publish).
    MemberAttributes(ClusterMemberAttrSetRequest),
    /// The cluster version the leader decided (etcd's `updateClusterVersion`).
    ClusterVersion(String),
    /// The cluster's downgrade state (etcd 3.5's `DowngradeInfoSet`).
    Downgrade(DowngradeInfoSetRequest),
    /// A range through raft (etcd 3.0's quorum reads): no side effect, nothing to apply.
    Range(RangeRequest),
    /// A v2 store request rustcd keeps no v2 store for (`SYNC`, the v2 API's writes): applied
    /// as nothing, as every member's v3 state is untouched by it in etcd too.
    V2(V2Request),
}

/// A decoded entry: the proposer's request ID (its waiter), who it runs as, what it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub id: u64,
    /// The user and auth revision from the request's header; `None` for the server's own
    /// requests (and every v2 request), which carry no user.
    pub who: Option<AuthInfo>,
    pub op: Op,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("neither an InternalRaftRequest nor a v2 request: {0}")]
    Undecodable(#[from] prost::DecodeError),
    #[error("an InternalRaftRequest with no request rustcd knows")]
    Unknown,
    #[error("a v2 request with a malformed member attributes value: {0}")]
    Attributes(#[from] serde_json::Error),
}

/// The entry data for `op`, proposed with request ID `id` as `who`.
pub fn encode(id: u64, who: &AuthInfo, op: Op) -> Vec<u8> {
    let mut r = InternalRaftRequest {
        header: Some(RequestHeader { id, username: who.username.clone(), auth_revision: who.revision }),
        ..Default::default()
    };
    match op {
        Op::Put(p) => r.put = Some(p),
        Op::DeleteRange(d) => r.delete_range = Some(d),
        Op::Txn(t) => r.txn = Some(t),
        Op::Compaction(c) => r.compaction = Some(c),
        Op::LeaseGrant(g) => r.lease_grant = Some(g),
        Op::LeaseRevoke(l) => r.lease_revoke = Some(l),
        Op::LeaseCheckpoint(c) => r.lease_checkpoint = Some(c),
        Op::Alarm(a) => r.alarm = Some(a),
        Op::Auth(a) => set_auth(&mut r, a),
        // etcd 3.4 and 3.5 publish through the v2 store (3.4 members know no other way).
        Op::MemberAttributes(a) => {
            let attrs = a.member_attributes.unwrap_or_default();
            let json = member::Attributes { name: attrs.name, client_urls: attrs.client_urls }.to_json();
            return v2_put(id, member::attributes_path(a.member_id), json).encode_to_vec();
        }
        Op::ClusterVersion(v) => return v2_put(id, member::CLUSTER_VERSION_PATH.into(), v).encode_to_vec(),
        Op::Downgrade(d) => r.downgrade_info_set = Some(d),
        Op::Range(q) => r.range = Some(q),
        Op::V2(mut v) => {
            v.id = Some(id);
            return v.encode_to_vec();
        }
    }
    r.encode_to_vec()
}

/// etcd's UpdateNode conf change (its `member update`), `id` its request ID: member `node_id`
/// is reached at `peer_urls`; the context is etcd's member JSON. Proposed as a marked normal
/// entry ([`rustcd_raft::UPDATE_NODE_CONTEXT`]).
pub fn update_node(id: u64, node_id: u64, peer_urls: Vec<String>) -> Vec<u8> {
    use rustcd_api::raftpb::{ConfChange, ConfChangeType};
    let member = member::MemberJson { id: node_id, peer_urls, ..Default::default() };
    let cc = ConfChange {
        id: Some(id),
        r#type: Some(ConfChangeType::ConfChangeUpdateNode as i32),
        node_id: Some(node_id),
        context: Some(member.to_json().into_bytes().into()),
    };
    cc.encode_to_vec()
}

fn set_auth(r: &mut InternalRaftRequest, a: AuthOp) {
    match a {
        AuthOp::Enable(x) => r.auth_enable = Some(x),
        AuthOp::Disable(x) => r.auth_disable = Some(x),
        AuthOp::Status(x) => r.auth_status = Some(x),
        AuthOp::Authenticate(x) => r.authenticate = Some(x),
        AuthOp::UserAdd(x) => r.auth_user_add = Some(x),
        AuthOp::UserDelete(x) => r.auth_user_delete = Some(x),
        AuthOp::UserChangePassword(x) => r.auth_user_change_password = Some(x),
        AuthOp::UserGrantRole(x) => r.auth_user_grant_role = Some(x),
        AuthOp::UserGet(x) => r.auth_user_get = Some(x),
        AuthOp::UserRevokeRole(x) => r.auth_user_revoke_role = Some(x),
        AuthOp::UserList(x) => r.auth_user_list = Some(x),
        AuthOp::RoleAdd(x) => r.auth_role_add = Some(x),
        AuthOp::RoleGrantPermission(x) => r.auth_role_grant_permission = Some(x),
        AuthOp::RoleGet(x) => r.auth_role_get = Some(x),
        AuthOp::RoleRevokePermission(x) => r.auth_role_revoke_permission = Some(x),
        AuthOp::RoleDelete(x) => r.auth_role_delete = Some(x),
        AuthOp::RoleList(x) => r.auth_role_list = Some(x),
    }
}

/// A v2 `PUT` as etcd's publish and cluster version update make it: every non-nullable field
/// written, as etcd's encoder writes them.
fn v2_put(id: u64, path: String, val: String) -> V2Request {
    V2Request {
        id: Some(id),
        method: Some("PUT".into()),
        path: Some(path),
        val: Some(val),
        dir: Some(false),
        prev_value: Some(String::new()),
        prev_index: Some(0),
        prev_exist: None,
        expiration: Some(0),
        wait: Some(false),
        since: Some(0),
        recursive: Some(false),
        sorted: Some(false),
        quorum: Some(false),
        time: Some(0),
        stream: Some(false),
        refresh: None,
    }
}

/// Reads an entry's data as etcd does.
pub fn decode(data: &[u8]) -> Result<Proposal, DecodeError> {
    let mut r = match InternalRaftRequest::decode(data) {
        Ok(r) => r,
        // etcd's "backward compatible" path: a bare v2 request.
        Err(_) => return decode_v2(V2Request::decode(data)?),
    };
    if let Some(v2) = r.v2 {
        return decode_v2(v2);
    }
    let header = r.header.take().unwrap_or_default();
    let id = if r.id != 0 { r.id } else { header.id };
    let who = (!header.username.is_empty() || header.auth_revision != 0)
        .then_some(AuthInfo { username: header.username, revision: header.auth_revision });
    let op = take_op(&mut r).ok_or(DecodeError::Unknown)?;
    Ok(Proposal { id, who, op })
}

/// The request an InternalRaftRequest carries, looked for in the order etcd's applier does.
fn take_op(r: &mut InternalRaftRequest) -> Option<Op> {
    let kv = r
        .range
        .take()
        .map(Op::Range)
        .or_else(|| r.put.take().map(Op::Put))
        .or_else(|| r.delete_range.take().map(Op::DeleteRange))
        .or_else(|| r.txn.take().map(Op::Txn))
        .or_else(|| r.compaction.take().map(Op::Compaction))
        .or_else(|| r.lease_grant.take().map(Op::LeaseGrant))
        .or_else(|| r.lease_revoke.take().map(Op::LeaseRevoke))
        .or_else(|| r.lease_checkpoint.take().map(Op::LeaseCheckpoint))
        .or_else(|| r.alarm.take().map(Op::Alarm));
    kv.or_else(|| take_auth(r).map(Op::Auth))
        .or_else(|| r.cluster_version_set.take().map(|v| Op::ClusterVersion(v.ver)))
        .or_else(|| r.cluster_member_attr_set.take().map(Op::MemberAttributes))
        .or_else(|| r.downgrade_info_set.take().map(Op::Downgrade))
}

fn take_auth(r: &mut InternalRaftRequest) -> Option<AuthOp> {
    r.authenticate
        .take()
        .map(AuthOp::Authenticate)
        .or_else(|| r.auth_enable.take().map(AuthOp::Enable))
        .or_else(|| r.auth_disable.take().map(AuthOp::Disable))
        .or_else(|| r.auth_status.take().map(AuthOp::Status))
        .or_else(|| r.auth_user_add.take().map(AuthOp::UserAdd))
        .or_else(|| r.auth_user_delete.take().map(AuthOp::UserDelete))
        .or_else(|| r.auth_user_change_password.take().map(AuthOp::UserChangePassword))
        .or_else(|| r.auth_user_grant_role.take().map(AuthOp::UserGrantRole))
        .or_else(|| r.auth_user_get.take().map(AuthOp::UserGet))
        .or_else(|| r.auth_user_revoke_role.take().map(AuthOp::UserRevokeRole))
        .or_else(|| r.auth_user_list.take().map(AuthOp::UserList))
        .or_else(|| r.auth_role_add.take().map(AuthOp::RoleAdd))
        .or_else(|| r.auth_role_grant_permission.take().map(AuthOp::RoleGrantPermission))
        .or_else(|| r.auth_role_get.take().map(AuthOp::RoleGet))
        .or_else(|| r.auth_role_revoke_permission.take().map(AuthOp::RoleRevokePermission))
        .or_else(|| r.auth_role_delete.take().map(AuthOp::RoleDelete))
        .or_else(|| r.auth_role_list.take().map(AuthOp::RoleList))
}

/// A v2 request: the member attributes and cluster version writes mean something to the v3
/// state (etcd applies them to its backend too); every other one is kept as it is.
fn decode_v2(v: V2Request) -> Result<Proposal, DecodeError> {
    let id = v.id.unwrap_or_default();
    let (method, path) = (v.method.as_deref().unwrap_or_default(), v.path.as_deref().unwrap_or_default());
    let op = match (method, member::parse_attributes_path(path)) {
        ("PUT", Some(member_id)) => {
            let a = member::Attributes::parse(v.val.as_deref().unwrap_or_default().as_bytes())?;
            Op::MemberAttributes(ClusterMemberAttrSetRequest {
                member_id,
                member_attributes: Some(Attributes { name: a.name, client_urls: a.client_urls }),
            })
        }
        ("PUT", None) if path == member::CLUSTER_VERSION_PATH => Op::ClusterVersion(v.val.unwrap_or_default()),
        _ => Op::V2(v),
    };
    Ok(Proposal { id, who: None, op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustcd_api::etcdserverpb::{AuthEnableRequest, AuthRoleGrantPermissionRequest, InternalAuthenticateRequest};

    /// What etcd 3.4.23's encoders (Debian's golang-etcd-server-dev: `InternalRaftRequest`,
    /// `Request` and `raftpb.ConfChange` `Marshal`, the JSON its publish and member update
    /// write) make of the requests the tests build, in hex.
    mod etcd {
        pub const PUT: &str = "22080a016b1201761805a2060708071201751803";
        pub const AUTH_ENABLE: &str = "a206020809c23e00";
        pub const LEASE_REVOKE_AS_ROOT: &str = "4a0308b424a2060a080a1204726f6f741805";
        pub const AUTHENTICATE: &str = "a20602080ba23f150a01751a106162636465666768696a6b6c6d6e6f70";
        pub const ROLE_GRANT: &str = "a2060a080c1204726f6f7418029a4b030a0172";
        pub const V2_PUBLISH: &str = "080d12035055541a192f302f6d656d626572732f6162632f6174747269627574657322347b226e616d65223a226d31222c22636c69656e7455524c73223a5b22687474703a2f2f3132372e302e302e313a32333739225d7d2800320038004800500058006000680070007800800100";
        pub const V2_VERSION: &str =
            "080e12035055541a0a2f302f76657273696f6e2205332e342e302800320038004800500058006000680070007800800100";
        pub const V2_SYNC: &str =
            "080f120453594e431a002200280032003800480050005800600068007000788080a8b1e39fe7cb17800100";
        pub const CONF_CHANGE_UPDATE_NODE: &str = "0810100218bc1522307b226964223a323734382c227065657255524c73223a5b22687474703a2f2f3132372e302e302e313a32333830225d7d";
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn user(name: &str, revision: u64) -> AuthInfo {
        AuthInfo { username: name.into(), revision }
    }

    /// Encoded as etcd encodes it, and etcd's bytes read back as the same proposal.
    fn both_ways(id: u64, who: AuthInfo, op: Op, etcd_hex: &str) {
        assert_eq!(hex(&encode(id, &who, op.clone())), etcd_hex, "the bytes etcd writes");
        let who = (!who.username.is_empty() || who.revision != 0).then_some(who);
        assert_eq!(decode(&unhex(etcd_hex)).expect("decode"), Proposal { id, who, op });
    }

    #[test]
    fn v3_requests_are_etcds_bytes() {
        let put = PutRequest { key: "k".into(), value: "v".into(), lease: 5, ..Default::default() };
        both_ways(7, user("u", 3), Op::Put(put), etcd::PUT);
        both_ways(9, AuthInfo::default(), Op::Auth(AuthOp::Enable(AuthEnableRequest {})), etcd::AUTH_ENABLE);
        both_ways(10, user("root", 5), Op::LeaseRevoke(LeaseRevokeRequest { id: 0x1234 }), etcd::LEASE_REVOKE_AS_ROOT);
        let authenticate = InternalAuthenticateRequest {
            name: "u".into(),
            password: String::new(),
            simple_token: "abcdefghijklmnop".into(),
        };
        both_ways(11, AuthInfo::default(), Op::Auth(AuthOp::Authenticate(authenticate)), etcd::AUTHENTICATE);
        let grant = AuthRoleGrantPermissionRequest { name: "r".into(), perm: None };
        both_ways(12, user("root", 2), Op::Auth(AuthOp::RoleGrantPermission(grant)), etcd::ROLE_GRANT);
    }

    #[test]
    fn membership_writes_are_etcds_v2_requests() {
        let attrs = ClusterMemberAttrSetRequest {
            member_id: 0xabc,
            member_attributes: Some(Attributes {
                name: "m1".into(),
                client_urls: vec!["http://127.0.0.1:2379".into()],
            }),
        };
        both_ways(13, AuthInfo::default(), Op::MemberAttributes(attrs), etcd::V2_PUBLISH);
        both_ways(14, AuthInfo::default(), Op::ClusterVersion("3.4.0".into()), etcd::V2_VERSION);
        let sync = decode(&unhex(etcd::V2_SYNC)).expect("decode");
        assert_eq!(sync.id, 15);
        assert!(matches!(&sync.op, Op::V2(r) if r.method.as_deref() == Some("SYNC")), "{sync:?}");
        assert_eq!(hex(&encode(15, &AuthInfo::default(), sync.op)), etcd::V2_SYNC, "a v2 request is kept as it was");
    }

    #[test]
    fn member_update_is_etcds_update_node() {
        let cc = update_node(16, 0xabc, vec!["http://127.0.0.1:2380".into()]);
        assert_eq!(hex(&cc), etcd::CONF_CHANGE_UPDATE_NODE);
    }

    #[test]
    fn etcd_3_5_requests_are_read() {
        let r = InternalRaftRequest {
            header: Some(RequestHeader { id: 21, ..Default::default() }),
            cluster_version_set: Some(rustcd_api::membershippb::ClusterVersionSetRequest { ver: "3.5.0".into() }),
            ..Default::default()
        };
        let p = decode(&r.encode_to_vec()).expect("decode");
        assert_eq!((p.id, p.op), (21, Op::ClusterVersion("3.5.0".into())));
        let downgrade = DowngradeInfoSetRequest { enabled: true, ver: "3.4.0".into() };
        let bytes = encode(22, &AuthInfo::default(), Op::Downgrade(downgrade.clone()));
        assert_eq!(decode(&bytes).expect("decode").op, Op::Downgrade(downgrade));
    }

    #[test]
    fn what_is_not_a_request_is_an_error() {
        let empty =
            InternalRaftRequest { header: Some(RequestHeader { id: 1, ..Default::default() }), ..Default::default() };
        assert!(matches!(decode(&empty.encode_to_vec()), Err(DecodeError::Unknown)));
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        let bad_attrs = v2_put(1, member::attributes_path(1), "{".into()).encode_to_vec();
        assert!(matches!(decode(&bad_attrs), Err(DecodeError::Attributes(_))));
    }
}
