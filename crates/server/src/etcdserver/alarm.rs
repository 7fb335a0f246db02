//! etcd's alarms (its `v3alarm` store and the `corrupt` and `capped` appliers). An alarm is
//! raised and disarmed through raft (Maintenance.Alarm, the corruption check, later the quota),
//! so every member holds the same set; the set lives in the backend's meta table and survives
//! restarts and snapshots. While an alarm is active, [`AlarmGate`] refuses what etcd refuses:
//! CORRUPT stops every write (`etcdserver: corrupt cluster`); NOSPACE stops what would grow the
//! store (puts, txns with puts, lease grants: `etcdserver: mvcc: database space exceeded`).
//! Reads are served from the read path and never pass here, as in etcd.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::etcdserver::request::Op;
use rustcd_api::etcdserverpb::alarm_request::AlarmAction;
use rustcd_api::etcdserverpb::request_op::Request as TxnOp;
use rustcd_api::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType, TxnRequest};
use rustcd_mvcc::{KvStore, WriteTxn};

use rustcd_schema::meta;

use crate::error::ServerError;
use crate::etcdserver::apply::{Applied, ApplyRequest, Origin};

/// Where the backend keeps an alarm (`rustcd_schema::meta`).
fn meta_key(a: &AlarmMember) -> String {
    meta::alarm_key(a.alarm, a.member_id)
}

/// The active alarms, as (alarm type, member id).
#[derive(Debug, Default)]
pub struct Alarms {
    set: Mutex<BTreeSet<(i32, u64)>>,
}

impl Alarms {
    /// The alarms the backend holds.
    pub fn load(store: &KvStore) -> Result<Alarms, rustcd_mvcc::Error> {
        let a = Alarms::default();
        a.reload(store)?;
        Ok(a)
    }

    /// Reads the set again from the backend (after a snapshot replaced it).
    pub fn reload(&self, store: &KvStore) -> Result<(), rustcd_mvcc::Error> {
        let mut set = BTreeSet::new();
        for (k, _) in store.meta_prefix(meta::ALARM_PREFIX)? {
            match meta::parse_alarm_key(&k) {
                Some(entry) => {
                    set.insert(entry);
                }
                None => tracing::warn!(key = %k, "ignoring an unreadable alarm record"),
            }
        }
        *self.lock() = set;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(i32, u64)>> {
        self.set.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The active alarms of one type, or all of them for `NONE`.
    pub fn get(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        let want = alarm as i32;
        self.lock()
            .iter()
            .filter(|(t, _)| want == AlarmType::None as i32 || *t == want)
            .map(|&(alarm, member_id)| AlarmMember { member_id, alarm })
            .collect()
    }

    pub fn is_active(&self, alarm: AlarmType) -> bool {
        self.lock().iter().any(|(t, _)| *t == alarm as i32)
    }

    /// Applies one alarm request: etcd's `applierV3backend.Alarm`.
    pub(crate) fn apply(&self, w: &mut WriteTxn, r: &AlarmRequest) -> AlarmResponse {
        let mut resp = AlarmResponse::default();
        let alarm = AlarmType::try_from(r.alarm).unwrap_or(AlarmType::None);
        let m = AlarmMember { member_id: r.member_id, alarm: alarm as i32 };
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => resp.alarms = self.get(alarm),
            Ok(AlarmAction::Activate) if alarm != AlarmType::None => {
                let first = !self.is_active(alarm);
                if self.lock().insert((m.alarm, m.member_id)) {
                    w.put_meta(&meta_key(&m), &[]);
                }
                if first {
                    tracing::warn!(alarm = alarm.as_str_name(), from = %format!("{:x}", m.member_id), "alarm raised");
                }
                resp.alarms.push(m);
            }
            Ok(AlarmAction::Deactivate) if self.lock().remove(&(m.alarm, m.member_id)) => {
                w.remove_meta(&meta_key(&m));
                if !self.is_active(alarm) {
                    let from = format!("{:x}", m.member_id);
                    tracing::warn!(alarm = alarm.as_str_name(), from = %from, "alarm disarmed");
                }
                resp.alarms.push(m);
            }
            _ => {}
        }
        resp
    }
}

/// The apply layer that, while an alarm is active, refuses what etcd's corrupt and capped
/// appliers refuse before it reaches the layer below (alarm requests themselves pass).
pub struct AlarmGate {
    pub alarms: std::sync::Arc<Alarms>,
    pub inner: Box<dyn ApplyRequest>,
}

impl ApplyRequest for AlarmGate {
    fn apply(&self, w: &mut WriteTxn, op: Op, origin: &Origin) -> Result<Applied, ServerError> {
        let client_write = matches!(
            op,
            Op::Put(_) | Op::DeleteRange(_) | Op::Txn(_) | Op::Compaction(_) | Op::LeaseGrant(_) | Op::LeaseRevoke(_)
        );
        if client_write && self.alarms.is_active(AlarmType::Corrupt) {
            return Err(ServerError::Corrupt);
        }
        let grows = match &op {
            Op::Put(_) | Op::LeaseGrant(_) => true,
            Op::Txn(t) => txn_puts(t),
            _ => false,
        };
        if grows && self.alarms.is_active(AlarmType::Nospace) {
            return Err(ServerError::NoSpace);
        }
        self.inner.apply(w, op, origin)
    }
}

/// Whether either branch of a txn puts a key (etcd's quota cost of a txn is non-zero).
fn txn_puts(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| matches!(op.request, Some(TxnOp::RequestPut(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: AlarmAction, member_id: u64, t: AlarmType) -> AlarmRequest {
        AlarmRequest { action: action as i32, member_id, alarm: t as i32 }
    }

    #[test]
    fn alarms_are_kept_in_the_backend_and_gate_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KvStore::open(dir.path().join("db")).expect("open");
        let alarms = std::sync::Arc::new(Alarms::default());
        let lessor = std::sync::Arc::new(std::sync::Mutex::new(rustcd_lease::Lessor::new(5)));
        let backend = crate::etcdserver::apply::Backend {
            lessor,
            alarms: alarms.clone(),
            auth: std::sync::Arc::new(
                rustcd_auth::AuthStore::open(
                    &store,
                    rustcd_auth::parse_token_options("simple", 300).expect("tokens"),
                    4,
                )
                .expect("auth store"),
            ),
            membership: std::sync::Arc::new(crate::etcdserver::membership::Membership::new(
                Default::default(),
                Box::new(|_| {}),
            )),
        };
        let gate = AlarmGate { alarms: alarms.clone(), inner: Box::new(backend) };
        let run =
            |op: Op| store.write(true, &|_| false, |w| gate.apply(w, op, &Default::default())).expect("write").value;
        let put = || Op::Put(rustcd_api::etcdserverpb::PutRequest { key: b"k".to_vec().into(), ..Default::default() });

        run(Op::Alarm(req(AlarmAction::Activate, 7, AlarmType::Nospace))).expect("alarm request");
        run(Op::Alarm(req(AlarmAction::Activate, 9, AlarmType::Corrupt))).expect("alarm request");
        let reloaded = Alarms::load(&store).expect("load");
        let listed = |a: &Alarms| a.get(AlarmType::None).iter().map(|m| (m.alarm, m.member_id)).collect::<Vec<_>>();
        assert_eq!(listed(&reloaded), vec![(1, 7), (2, 9)], "both alarms survive in the backend");
        assert_eq!(run(put()).err(), Some(ServerError::Corrupt), "CORRUPT stops every write");

        run(Op::Alarm(req(AlarmAction::Deactivate, 9, AlarmType::Corrupt))).expect("alarm request");
        assert_eq!(run(put()).err(), Some(ServerError::NoSpace), "NOSPACE stops a put");
        let del = rustcd_api::etcdserverpb::DeleteRangeRequest { key: b"k".to_vec().into(), ..Default::default() };
        assert!(run(Op::DeleteRange(del)).is_ok(), "but not a delete");

        run(Op::Alarm(req(AlarmAction::Deactivate, 7, AlarmType::Nospace))).expect("alarm request");
        assert!(run(put()).is_ok(), "no alarm: writes go through");
        assert!(Alarms::load(&store).expect("load").get(AlarmType::None).is_empty(), "disarmed in the backend too");
    }
}
