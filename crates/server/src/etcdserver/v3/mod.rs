//! The typed request API of the server (etcd's `v3_server.go`): each method validates, reads
//! or proposes through raft, and returns etcd's response with its header filled in, or a
//! [`ServerError`]. The gRPC handlers (and later the JSON gateway) only call these.

use crate::etcdserver::request::Op;
use rustcd_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};

use crate::error::ServerError;
use crate::etcdserver::apply::expect_applied;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;
use crate::etcdserver::validate;

pub mod auth;
pub mod cluster;
pub mod lease;
pub mod lock;
pub mod maintenance;
mod range_stream;

/// The revision a response's header names (0 when it has none).
fn revision(h: &Option<ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

impl EtcdServer {
    /// A Range: local for serializable reads, after a ReadIndex round otherwise. The backend
    /// read runs on a blocking thread.
    pub async fn range(&self, caller: &Caller, r: RangeRequest) -> Result<RangeResponse, ServerError> {
        self.before_range(caller, &r).await?;
        let store = self.store().clone();
        let mut resp = blocking(move || store.range(&r)).await??;
        resp.header = self.header(revision(&resp.header));
        Ok(resp)
    }

    /// A Range whose answer the caller builds from a plan as it goes ([`crate::api::grpc`]'s
    /// hand-served path), for a request [`rustcd_mvcc::plannable`] says may be planned (one that
    /// sorts, filters or only counts needs [`EtcdServer::range`]): `measure` runs on the
    /// blocking thread right after the plan is made.
    pub async fn range_plan<T: Send + 'static>(
        &self,
        caller: &Caller,
        r: RangeRequest,
        measure: impl FnOnce(rustcd_mvcc::RangePlan) -> Result<T, rustcd_mvcc::Error> + Send + 'static,
    ) -> Result<T, ServerError> {
        self.before_range(caller, &r).await?;
        let store = self.store().clone();
        blocking(move || store.plan_range(&r).and_then(measure)).await?.map_err(ServerError::from)
    }

    /// What a Range waits for and is checked against before it reads: its request, then
    /// [`EtcdServer::may_read`].
    async fn before_range(&self, caller: &Caller, r: &RangeRequest) -> Result<(), ServerError> {
        validate::range(r)?;
        self.may_read(caller, r).await
    }

    /// A checked range request's wait and permission: a linearizable read's ReadIndex, and the
    /// caller's permission on its keys.
    async fn may_read(&self, caller: &Caller, r: &RangeRequest) -> Result<(), ServerError> {
        if !r.serializable {
            self.linearizable_barrier().await?;
        }
        if self.auth().is_enabled() {
            self.auth().is_range_permitted(caller.who()?, &r.key, &r.range_end)?;
        }
        Ok(())
    }

    pub async fn put(self: &std::sync::Arc<Self>, caller: &Caller, p: PutRequest) -> Result<PutResponse, ServerError> {
        validate::put(&p)?;
        #[cfg(feature = "failpoints")]
        if rustcd_process::failpoints::returns("ack-before-commit") {
            return Ok(self.put_acknowledged_before_commit(caller, p));
        }
        let op = Op::Put(p);
        self.check_quota(&op).await?;
        let mut resp = expect_applied!(self.propose(caller, op).await?, Put)?;
        resp.header = self.header(revision(&resp.header));
        Ok(resp)
    }

    /// The deliberate bug the robustness checker must catch: answers before raft commits.
    #[cfg(feature = "failpoints")]
    fn put_acknowledged_before_commit(self: &std::sync::Arc<Self>, caller: &Caller, p: PutRequest) -> PutResponse {
        let rev = self.store().current_rev();
        let (s, caller) = (self.clone(), caller.clone());
        tokio::spawn(async move { s.propose(&caller, Op::Put(p)).await });
        PutResponse { header: self.header(rev + 1), ..Default::default() }
    }

    pub async fn delete_range(
        &self,
        caller: &Caller,
        d: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ServerError> {
        validate::delete_range(&d)?;
        let mut resp = expect_applied!(self.propose(caller, Op::DeleteRange(d)).await?, DeleteRange)?;
        resp.header = self.header(revision(&resp.header));
        Ok(resp)
    }

    /// A Txn: one that only reads is served from the read path (a ReadIndex round, then one
    /// read snapshot on a blocking thread, no write lock); any other goes through raft.
    pub async fn txn(&self, caller: &Caller, t: TxnRequest) -> Result<TxnResponse, ServerError> {
        validate::txn(&t, self.config().raw.max_txn_ops)?;
        let mut resp = if rustcd_mvcc::is_read_only(&t) {
            self.linearizable_barrier().await?;
            if self.auth().is_enabled() {
                crate::etcdserver::auth::check_read_txn(self.auth(), caller.who()?, &t)?;
            }
            let store = self.store().clone();
            blocking(move || store.read_only_txn(&t)).await??
        } else {
            let op = Op::Txn(t);
            self.check_quota(&op).await?;
            expect_applied!(self.propose(caller, op).await?, Txn)?
        };
        resp.header = self.header(revision(&resp.header));
        Ok(resp)
    }

    pub async fn compact(&self, caller: &Caller, c: CompactionRequest) -> Result<CompactionResponse, ServerError> {
        let mut resp = expect_applied!(self.propose(caller, Op::Compaction(c)).await?, Compaction)?;
        resp.header = self.header(revision(&resp.header));
        Ok(resp)
    }

    pub async fn lease_grant(
        &self,
        caller: &Caller,
        mut r: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, ServerError> {
        if r.ttl > rustcd_lease::MAX_LEASE_TTL {
            return Err(ServerError::LeaseTtlTooLarge);
        }
        if r.id == 0 {
            r.id = self.fresh_lease_id();
        }
        let op = Op::LeaseGrant(r);
        self.check_quota(&op).await?;
        let mut resp = expect_applied!(self.propose(caller, op).await?, LeaseGrant)?;
        resp.header = self.current_header();
        Ok(resp)
    }

    /// Maintenance.Alarm: every action goes through raft, as in etcd, so a listing reflects
    /// every alarm raised before it.
    /// etcd (3.5.2x): listing alarms needs a named caller, raising or disarming one root.
    pub async fn alarm(&self, caller: &Caller, r: AlarmRequest) -> Result<AlarmResponse, ServerError> {
        if r.action == rustcd_api::etcdserverpb::alarm_request::AlarmAction::Get as i32 {
            if self.auth().is_enabled() && caller.who()?.is_none() {
                return Err(ServerError::UserEmpty);
            }
        } else {
            self.check_admin(caller)?;
        }
        expect_applied!(self.propose(caller, Op::Alarm(r)).await?, Alarm)
    }

    /// Raises `alarm` for `member_id` through raft (the corruption checks, the quota).
    pub async fn raise_alarm(
        &self,
        member_id: u64,
        alarm: rustcd_api::etcdserverpb::AlarmType,
    ) -> Result<(), ServerError> {
        use rustcd_api::etcdserverpb::alarm_request::AlarmAction;
        let r = AlarmRequest { action: AlarmAction::Activate as i32, member_id, alarm: alarm as i32 };
        self.propose_internal(Op::Alarm(r)).await.map(|_| ())
    }

    pub async fn lease_revoke(
        &self,
        caller: &Caller,
        r: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, ServerError> {
        expect_applied!(self.propose(caller, Op::LeaseRevoke(r)).await?, LeaseRevoke)?;
        Ok(LeaseRevokeResponse { header: self.current_header() })
    }
}

/// Runs backend work on a blocking thread, off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ServerError::Internal(format!("backend task failed: {e}")))
}
