//! Where authentication meets the server. A client request's [`Caller`] (from its `token`
//! metadata, or from its TLS certificate's common name with `--client-cert-auth`) is resolved
//! once by the front end and passed explicitly to the typed API (etcd carries it in its
//! request context). Proposals stamp it into the raft entry
//! (user and auth revision), where every member's [`AuthGate`] checks the request's permissions
//! at apply, as etcd's `authApplierV3` does; reads check before they read. A token that names
//! no one is only an error where a caller is needed: `Status` or `MemberList` with a stale
//! token still answer, as in etcd.

use std::sync::Arc;

use crate::etcdserver::request::Op;
use rustcd_api::etcdserverpb::request_op::Request as TxnOp;
use rustcd_api::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use rustcd_auth::{AuthError, AuthInfo, AuthStore};
use rustcd_mvcc::WriteTxn;

use crate::error::ServerError;
use crate::etcdserver::apply::{Applied, ApplyRequest, Origin};
use crate::etcdserver::lease::{self, SharedLessor};
use crate::etcdserver::server::EtcdServer;

/// Who sent a client request: resolved once, from its token (or with `--client-cert-auth`
/// its TLS certificate's common name), by the front end that received it, and passed by value
/// to every call of the typed API that reads or proposes for it (etcd's request `ctx`). Work a
/// handler spawns takes its caller along as a value: nothing is looked up from the task. The
/// server's own proposals (lease checkpoints, compaction, alarms) have no caller: they go
/// through [`EtcdServer::propose_internal`](crate::etcdserver::server::EtcdServer::propose_internal),
/// and an expired lease's revocation through `propose_as_root`.
#[derive(Clone, Debug)]
pub struct Caller {
    who: Result<Option<AuthInfo>, AuthError>,
    /// The token the request carried: a request this member forwards to the leader carries it
    /// on, so the leader answers for the same caller.
    token: Option<String>,
}

impl Caller {
    /// What a request's credentials name now: etcd's `AuthInfoFromCtx`. The token wins over
    /// the certificate; a token that names no one is an error only where a caller is needed,
    /// so `Status` or `MemberList` with a stale token still answer, as in etcd.
    pub fn resolve(s: &EtcdServer, token: Option<&str>, common_name: Option<&str>) -> Caller {
        let who = match (token, common_name) {
            (Some(t), _) => s.auth().info_from_token(t),
            (None, Some(cn)) if s.config().raw.tls.client.client_cert_auth => Ok(s.auth().info_from_common_name(cn)),
            _ => Ok(None),
        };
        Caller { who, token: token.map(str::to_string) }
    }

    /// The caller of a request no front end resolved: refused as an invalid token, so a
    /// missing caller fails closed, never as the server's own request.
    pub fn unresolved() -> Caller {
        Caller { who: Err(AuthError::InvalidAuthToken), token: None }
    }

    /// The user the credentials name (`None`: no credentials), or the error the token earned.
    pub fn who(&self) -> Result<Option<&AuthInfo>, ServerError> {
        self.who.as_ref().map(Option::as_ref).map_err(|e| ServerError::from(e.clone()))
    }

    /// `msg` as a request to another member on this caller's behalf: with its token.
    pub fn forward<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(t) = self.token.as_deref().and_then(|t| t.parse().ok()) {
            req.metadata_mut().insert("token", t);
        }
        req
    }
}

/// The apply layer that refuses what the request's sender may not do (auth requests pass: the
/// auth store checks who may change it).
pub struct AuthGate {
    pub auth: Arc<AuthStore>,
    pub lessor: SharedLessor,
    pub inner: Box<dyn ApplyRequest>,
}

impl ApplyRequest for AuthGate {
    fn apply(&self, w: &mut WriteTxn, op: Op, o: &Origin) -> Result<Applied, ServerError> {
        if self.auth.is_enabled() {
            let who = o.who.as_ref();
            match &op {
                Op::Put(p) => self.check_put(who, p)?,
                Op::DeleteRange(d) => {
                    self.auth.is_delete_permitted(who, &d.key, &d.range_end)?;
                    if d.prev_kv {
                        self.auth.is_range_permitted(who, &d.key, &d.range_end)?;
                    }
                }
                Op::Txn(t) => self.check_txn(who, t)?,
                Op::LeaseRevoke(r) => self.check_lease_puts(who, r.id)?,
                _ => {}
            }
        }
        self.inner.apply(w, op, o)
    }
}

impl AuthGate {
    fn check_put(&self, who: Option<&AuthInfo>, p: &PutRequest) -> Result<(), AuthError> {
        self.auth.is_put_permitted(who, &p.key)?;
        // A lease already on a key the user may not write cannot be put on more keys: the
        // user could not revoke it.
        self.check_lease_puts(who, p.lease)?;
        if p.prev_kv {
            self.auth.is_range_permitted(who, &p.key, &[])?;
        }
        Ok(())
    }

    fn check_lease_puts(&self, who: Option<&AuthInfo>, id: i64) -> Result<(), AuthError> {
        let keys: Vec<Vec<u8>> = match lease::lock(&self.lessor).get(id) {
            Some(l) => l.keys.iter().cloned().collect(),
            None => return Ok(()),
        };
        if self.auth.is_admin_permitted(who).is_ok() {
            return Ok(());
        }
        keys.iter().try_for_each(|k| self.auth.is_put_permitted(who, k))
    }

    fn check_txn(&self, who: Option<&AuthInfo>, t: &TxnRequest) -> Result<(), AuthError> {
        for c in &t.compare {
            self.auth.is_range_permitted(who, &c.key, &c.range_end)?;
        }
        self.check_ops(who, &t.success)?;
        self.check_ops(who, &t.failure)
    }

    fn check_ops(&self, who: Option<&AuthInfo>, ops: &[RequestOp]) -> Result<(), AuthError> {
        for op in ops {
            match &op.request {
                Some(TxnOp::RequestRange(r)) => self.auth.is_range_permitted(who, &r.key, &r.range_end)?,
                Some(TxnOp::RequestPut(p)) => self.check_put(who, p)?,
                Some(TxnOp::RequestDeleteRange(d)) => {
                    if d.prev_kv {
                        self.auth.is_range_permitted(who, &d.key, &d.range_end)?;
                    }
                    self.auth.is_delete_permitted(who, &d.key, &d.range_end)?;
                }
                Some(TxnOp::RequestTxn(t)) => self.check_txn(who, t)?,
                None => {}
            }
        }
        Ok(())
    }
}

/// A read-only txn's permissions, checked before it is read (etcd checks these in its read path).
pub fn check_read_txn(auth: &AuthStore, who: Option<&AuthInfo>, t: &TxnRequest) -> Result<(), AuthError> {
    for c in &t.compare {
        auth.is_range_permitted(who, &c.key, &c.range_end)?;
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(TxnOp::RequestRange(r)) => auth.is_range_permitted(who, &r.key, &r.range_end)?,
            Some(TxnOp::RequestTxn(inner)) => check_read_txn(auth, who, inner)?,
            _ => {}
        }
    }
    Ok(())
}
