//! Where authentication meets the server. A client request's caller (from its `token` metadata,
//! or from its TLS certificate's common name with `--client-cert-auth`) is resolved once by the
//! [`layer`] middleware and carried, for the length of the handler, in the task-local
//! [`CALLER`] (etcd carries it in its request context). Proposals stamp it into the raft entry
//! (user and auth revision), where every member's [`AuthGate`] checks the request's permissions
//! at apply, as etcd's `authApplierV3` does; reads check before they read. A token that names
//! no one is only an error where a caller is needed: `Status` or `MemberList` with a stale
//! token still answer, as in etcd.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;
use rustcd_api::etcdserverpb::request_op::Request as TxnOp;
use rustcd_api::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use rustcd_api::rustcdpb::internal_request::Request as Op;
use rustcd_auth::{AuthError, AuthInfo, AuthStore};
use rustcd_mvcc::WriteTxn;

use crate::error::ServerError;
use crate::etcdserver::apply::{Applied, ApplyRequest, Origin};
use crate::etcdserver::lease::{self, SharedLessor};
use crate::etcdserver::server::EtcdServer;

/// Who sent the request being handled: `Ok(None)` for no token (or auth off), the token's
/// error when it named no one.
pub type Caller = Result<Option<AuthInfo>, AuthError>;

tokio::task_local! {
    /// The caller of the client request this task is handling.
    pub static CALLER: Caller;
}

/// The caller of the request being handled; `None` outside a client request (the server's own
/// proposals: lease expiry, compaction, alarms).
pub fn current() -> Option<Caller> {
    CALLER.try_with(|c| c.clone()).ok()
}

/// The caller, or the error its token earned.
pub fn caller() -> Result<Option<AuthInfo>, ServerError> {
    current().unwrap_or(Ok(None)).map_err(ServerError::from)
}

/// The TLS client certificate's common name, put on each request of its connection.
#[derive(Clone, Debug)]
pub struct PeerCommonName(pub String);

/// How long a request waits for its member to apply the entry that made its simple token.
const TOKEN_WAIT: Duration = Duration::from_secs(5);

/// Who a request's token (or, with `--client-cert-auth`, its TLS client certificate's common
/// name) names, now: etcd's `AuthInfoFromCtx`. The token wins over the certificate.
pub fn resolve(s: &EtcdServer, token: Option<&str>, common_name: Option<&str>) -> Caller {
    match (token, common_name) {
        (Some(t), _) => s.auth().info_from_token(t),
        (None, Some(cn)) if s.config().raw.tls.client.client_cert_auth => Ok(s.auth().info_from_common_name(cn)),
        _ => Ok(None),
    }
}

/// The raft index a gRPC request's token was made at, when this member may not have applied it
/// yet (a token made through another member): wait for it before [`caller_of`].
pub fn token_index<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get("token").and_then(|v| v.to_str().ok()).and_then(AuthStore::token_index)
}

/// Waits (a bounded time) until this member applied the entry that made a token.
pub async fn wait_for_token(s: &EtcdServer, index: u64) {
    s.wait_applied(index, TOKEN_WAIT).await;
}

/// Who a gRPC request's token (or TLS common name) names ([`crate::api::grpc::entry`] runs the
/// handler as this caller).
pub fn caller_of<B>(s: &EtcdServer, req: &Request<B>) -> Caller {
    let token = req.headers().get("token").and_then(|v| v.to_str().ok());
    let cn = req.extensions().get::<PeerCommonName>().map(|c| c.0.as_str());
    resolve(s, token, cn)
}

/// The apply layer that answers auth requests and refuses what the request's sender may not do.
pub struct AuthGate {
    pub auth: Arc<AuthStore>,
    pub lessor: SharedLessor,
    pub inner: Box<dyn ApplyRequest>,
}

impl ApplyRequest for AuthGate {
    fn apply(&self, w: &mut WriteTxn, op: Op, o: &Origin) -> Result<Applied, ServerError> {
        if let Op::Auth(a) = op {
            let op = a.op.ok_or(ServerError::EmptyRequestOp)?;
            return self.auth.apply(w, op, o.who.as_ref(), o.index).map(Applied::Auth).map_err(ServerError::from);
        }
        if !o.internal && self.auth.is_enabled() {
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
