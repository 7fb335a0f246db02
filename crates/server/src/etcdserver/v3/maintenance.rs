//! Maintenance (etcd's `maintenanceServer` behind its handlers): the member's status, hashes,
//! defragmentation and leadership transfer. The gRPC and JSON front ends only translate.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rustcd_api::etcdserverpb::{
    AlarmType, DefragmentResponse, DowngradeRequest, DowngradeResponse, HashKvResponse, HashResponse,
    MoveLeaderResponse, StatusResponse,
};

use crate::error::ServerError;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;
use crate::etcdserver::v3::blocking;

impl EtcdServer {
    /// etcd's `Status`: version, database sizes, leader, raft indexes, and as errors a missing
    /// leader and every active alarm (in etcd's text form). Anyone may ask.
    pub async fn status(&self) -> Result<StatusResponse, ServerError> {
        // The backend's page statistics need its (single) write transaction: wait off the
        // async workers.
        let store = self.store().clone();
        let (db_size, db_size_in_use) = blocking(move || store.db_size()).await?;
        let st = self.raft_status();
        let leader = st.leader.load(Ordering::Relaxed);
        let mut errors: Vec<String> = Vec::new();
        if leader == 0 {
            errors.push(ServerError::NoLeader.to_string());
        }
        for a in self.alarms().get(AlarmType::None) {
            let name = AlarmType::try_from(a.alarm).map_or("NONE", |t| t.as_str_name());
            errors.push(format!("memberID:{} alarm:{name} ", a.member_id));
        }
        Ok(StatusResponse {
            header: self.current_header(),
            version: rustcd_api::ETCD_VERSION.to_string(),
            db_size,
            leader,
            raft_index: st.commit.load(Ordering::Relaxed),
            raft_term: st.term.load(Ordering::Relaxed),
            raft_applied_index: self.applied(),
            errors,
            db_size_in_use,
            is_learner: st.is_learner.load(Ordering::Relaxed),
        })
    }

    /// Rewrites this member's backend file without its free pages (root only). Writes go on
    /// meanwhile: they wait only for the rows written during the copy to be copied, and for the
    /// swap of files.
    pub async fn defragment(&self, caller: &Caller) -> Result<DefragmentResponse, ServerError> {
        self.check_admin(caller)?;
        let store = self.store().clone();
        blocking(move || {
            fail::fail_point!("defragBeforeCompact");
            let r = store.defragment_with(&|| fail::fail_point!("defragBeforeSwap"));
            fail::fail_point!("defragAfterCompact");
            r
        })
        .await??;
        tracing::info!("finished defragmenting the backend");
        Ok(DefragmentResponse { header: self.current_header() })
    }

    /// The hash of every key and value at the current revision (root only).
    pub async fn hash(&self, caller: &Caller) -> Result<HashResponse, ServerError> {
        self.check_admin(caller)?;
        let store = self.store().clone();
        let (hash, _, rev) = blocking(move || store.hash_kv(0)).await??;
        Ok(HashResponse { header: self.header(rev), hash })
    }

    /// etcd's `HashKV` at `revision` (0: the current one), root only; a scan of the whole store,
    /// on a blocking thread.
    pub async fn hash_kv(&self, caller: &Caller, revision: i64) -> Result<HashKvResponse, ServerError> {
        self.check_admin(caller)?;
        let store = self.store().clone();
        let (hash, compact_revision, hash_revision) = blocking(move || store.hash_kv(revision)).await??;
        Ok(HashKvResponse { header: self.current_header(), hash, compact_revision, hash_revision })
    }

    /// etcd 3.5's `Downgrade`: not built yet (etcd 3.6's behaviour is the next round's).
    pub async fn downgrade(&self, _caller: &Caller, _r: DowngradeRequest) -> Result<DowngradeResponse, ServerError> {
        Err(ServerError::DowngradeNotImplemented)
    }

    /// etcd's `MoveLeader` (root only): on the leader, hands leadership to the voter `target`
    /// and waits (up to two election timeouts) until it leads.
    pub async fn move_leader(&self, caller: &Caller, target: u64) -> Result<MoveLeaderResponse, ServerError> {
        self.check_admin(caller)?;
        if self.leader() != self.member_id() {
            return Err(ServerError::NotLeader);
        }
        match self.membership().get(target) {
            Some(m) if !m.is_learner => {}
            _ => return Err(ServerError::BadLeaderTransferee),
        }
        if target != self.member_id() {
            self.transfer_leader(target).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(self.config().raw.election_timeout * 2);
            while self.leader() != target {
                if tokio::time::Instant::now() > deadline {
                    return Err(ServerError::LeaderTransferTimeout);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(MoveLeaderResponse { header: self.current_header() })
    }
}
