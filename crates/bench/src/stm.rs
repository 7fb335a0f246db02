//! etcd's `benchmark stm`: each transaction reads `--keys-per-txn` distinct keys of `--keys`,
//! overwrites `--txn-wr-percent` of them, and commits with the compares of its isolation level
//! (etcd's `clientv3/concurrency` STM), retrying from the reads until the commit succeeds.

use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;

use crate::conn::{Token, with_token};
use crate::load::mix;
use crate::report::error_text;

/// etcd's `--isolation`: c, r, s or ss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Reads see the latest commit; writes are not checked.
    ReadCommitted,
    /// The commit fails when a key read has changed since.
    RepeatableReads,
    /// As repeatable reads, every read at the revision of the first.
    Serializable,
    /// As serializable, and the commit fails when a key written changed after the first read.
    SerializableSnapshot,
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Isolation, String> {
        match s {
            "c" => Ok(Isolation::ReadCommitted),
            "r" => Ok(Isolation::RepeatableReads),
            "s" => Ok(Isolation::Serializable),
            "ss" => Ok(Isolation::SerializableSnapshot),
            _ => Err(format!(
                "unknown isolation {s:?}: Read Committed (c), Repeatable Reads (r), Serializable (s), or Snapshot (ss)"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub isolation: Isolation,
    pub keys: usize,
    pub keys_per_txn: usize,
    pub write_percent: usize,
}

fn stm_key(i: usize) -> Vec<u8> {
    format!("stm/{i:012}").into_bytes()
}

fn mod_revision(key: &[u8], result: CompareResult, rev: i64) -> Compare {
    Compare {
        result: result as i32,
        target: CompareTarget::Mod as i32,
        key: key.to_vec().into(),
        target_union: Some(TargetUnion::ModRevision(rev)),
        range_end: Default::default(),
    }
}

/// The keys of the `n`th transaction: distinct, the same for both servers.
fn keys_of(n: usize, cfg: &Config) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let want = cfg.keys_per_txn.min(cfg.keys);
    let mut j = 0;
    while keys.len() < want {
        let k = stm_key(mix(n.wrapping_mul(1_000_003).wrapping_add(j)) % cfg.keys.max(1));
        if !keys.contains(&k) {
            keys.push(k);
        }
        j += 1;
    }
    keys
}

/// One transaction, retried until it commits.
pub async fn one(
    kv: &mut KvClient<Channel>,
    token: &Token,
    n: usize,
    cfg: Config,
    val_size: usize,
) -> Result<(), String> {
    let keys = keys_of(n, &cfg);
    let writes = keys.len() * cfg.write_percent / 100;
    loop {
        let mut first_rev = 0;
        let mut compare = Vec::new();
        for k in &keys {
            let mut r = RangeRequest { key: k.clone().into(), ..Default::default() };
            let at_first = matches!(cfg.isolation, Isolation::Serializable | Isolation::SerializableSnapshot);
            if at_first && first_rev > 0 {
                r.revision = first_rev;
                r.serializable = true;
            }
            let resp = kv.range(with_token(r, token)).await.map_err(|s| error_text(&s))?.into_inner();
            if first_rev == 0 {
                first_rev = resp.header.map_or(0, |h| h.revision);
            }
            if cfg.isolation != Isolation::ReadCommitted {
                let seen = resp.kvs.first().map_or(0, |kv| kv.mod_revision);
                compare.push(mod_revision(k, CompareResult::Equal, seen));
            }
        }
        let mut success = Vec::new();
        for k in keys.iter().take(writes) {
            if cfg.isolation == Isolation::SerializableSnapshot {
                compare.push(mod_revision(k, CompareResult::Less, first_rev + 1));
            }
            let put = PutRequest { key: k.clone().into(), value: vec![b's'; val_size].into(), ..Default::default() };
            success.push(RequestOp { request: Some(ReqOp::RequestPut(put)) });
        }
        let t = TxnRequest { compare, success, failure: vec![] };
        let resp = kv.txn(with_token(t, token)).await.map_err(|s| error_text(&s))?.into_inner();
        if resp.succeeded {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_has_distinct_keys_of_the_key_set() {
        let cfg = Config { isolation: Isolation::RepeatableReads, keys: 5, keys_per_txn: 5, write_percent: 50 };
        let mut keys = keys_of(42, &cfg);
        keys.sort();
        assert_eq!(keys, (0..5).map(stm_key).collect::<Vec<_>>());
        assert_eq!("ss".parse::<Isolation>(), Ok(Isolation::SerializableSnapshot));
        assert!("x".parse::<Isolation>().is_err());
    }
}
