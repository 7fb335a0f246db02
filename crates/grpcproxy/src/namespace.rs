//! `--namespace`: the proxy's clients see only the keys under a prefix, as if it were the whole
//! keyspace (etcd's `clientv3/namespace`). Keys and ranges of requests get the prefix (a range
//! to the end of the keyspace ends at the end of the prefix); keys in responses and events lose
//! it. KV and Watch are namespaced, and the keys a lease's time-to-live lists; Lock and
//! Election pass through as in etcd's proxy.

use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::response_op::Response as RespOp;
use rustcd_api::etcdserverpb::*;
use rustcd_api::mvccpb::KeyValue;
use tonic::Status;

/// A namespace; the empty prefix changes nothing.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    prefix: Vec<u8>,
}

/// etcd's `ErrGRPCEmptyKey`.
fn empty_key() -> Status {
    Status::invalid_argument("etcdserver: key is not provided")
}

impl Namespace {
    pub fn new(prefix: &str) -> Namespace {
        Namespace { prefix: prefix.as_bytes().to_vec() }
    }

    pub fn is_empty(&self) -> bool {
        self.prefix.is_empty()
    }

    fn key(&self, k: &[u8]) -> Vec<u8> {
        [&self.prefix[..], k].concat()
    }

    /// etcd's `prefixInterval`: `\0` (to the end of the keyspace) becomes the end of the prefix.
    pub fn interval(&self, key: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        if self.is_empty() {
            return (key.to_vec(), end.to_vec());
        }
        let end = match end {
            [] => Vec::new(),
            [0] => rustcd_gocompat::prefix_end(&self.prefix),
            e => self.key(e),
        };
        (self.key(key), end)
    }

    pub fn strip(&self, kv: &mut KeyValue) {
        if let Some(rest) = kv.key.strip_prefix(self.prefix.as_slice()) {
            kv.key = rest.to_vec().into();
        }
    }

    pub fn range(&self, r: &mut RangeRequest) -> Result<(), Status> {
        if self.is_empty() {
            return Ok(());
        }
        if r.key.is_empty() && r.range_end.is_empty() {
            return Err(empty_key());
        }
        let (k, e) = self.interval(&r.key, &r.range_end);
        (r.key, r.range_end) = (k.into(), e.into());
        Ok(())
    }

    pub fn range_resp(&self, r: &mut RangeResponse) {
        r.kvs.iter_mut().for_each(|kv| self.strip(kv));
    }

    pub fn put(&self, p: &mut PutRequest) -> Result<(), Status> {
        if self.is_empty() {
            return Ok(());
        }
        if p.key.is_empty() {
            return Err(empty_key());
        }
        p.key = self.key(&p.key).into();
        Ok(())
    }

    pub fn put_resp(&self, r: &mut PutResponse) {
        if let Some(kv) = r.prev_kv.as_mut() {
            self.strip(kv);
        }
    }

    pub fn delete(&self, d: &mut DeleteRangeRequest) -> Result<(), Status> {
        if self.is_empty() {
            return Ok(());
        }
        if d.key.is_empty() && d.range_end.is_empty() {
            return Err(empty_key());
        }
        let (k, e) = self.interval(&d.key, &d.range_end);
        (d.key, d.range_end) = (k.into(), e.into());
        Ok(())
    }

    pub fn delete_resp(&self, r: &mut DeleteRangeResponse) {
        r.prev_kvs.iter_mut().for_each(|kv| self.strip(kv));
    }

    /// Every compare and every operation of both branches, nested txns too.
    pub fn txn(&self, t: &mut TxnRequest) -> Result<(), Status> {
        if self.is_empty() {
            return Ok(());
        }
        for c in &mut t.compare {
            let (k, e) = self.interval(&c.key, &c.range_end);
            (c.key, c.range_end) = (k.into(), e.into());
        }
        for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
            match &mut op.request {
                Some(ReqOp::RequestRange(r)) => self.range(r)?,
                Some(ReqOp::RequestPut(p)) => self.put(p)?,
                Some(ReqOp::RequestDeleteRange(d)) => self.delete(d)?,
                Some(ReqOp::RequestTxn(inner)) => self.txn(inner)?,
                None => {}
            }
        }
        Ok(())
    }

    pub fn txn_resp(&self, r: &mut TxnResponse) {
        for op in &mut r.responses {
            match &mut op.response {
                Some(RespOp::ResponseRange(rr)) => self.range_resp(rr),
                Some(RespOp::ResponsePut(p)) => self.put_resp(p),
                Some(RespOp::ResponseDeleteRange(d)) => self.delete_resp(d),
                Some(RespOp::ResponseTxn(inner)) => self.txn_resp(inner),
                None => {}
            }
        }
    }

    pub fn lease_keys(&self, r: &mut LeaseTimeToLiveResponse) {
        for k in &mut r.keys {
            if let Some(rest) = k.strip_prefix(self.prefix.as_slice()) {
                *k = rest.to_vec().into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_as_etcds_namespace() {
        let ns = Namespace::new("a/");
        assert_eq!(ns.interval(b"k", b""), (b"a/k".to_vec(), vec![]));
        assert_eq!(ns.interval(b"k", b"\0"), (b"a/k".to_vec(), b"a0".to_vec()), "to the end of the prefix");
        assert_eq!(ns.interval(b"", b"\0"), (b"a/".to_vec(), b"a0".to_vec()), "the whole namespace");
        assert_eq!(ns.interval(b"k", b"l"), (b"a/k".to_vec(), b"a/l".to_vec()));
        assert_eq!(Namespace::new("\u{7f}").interval(b"", b"\0").1, vec![0x80]);
        let all_ff = Namespace { prefix: vec![0xff, 0xff] };
        assert_eq!(all_ff.interval(b"", b"\0").1, vec![0], "0xff.. has no end but the keyspace's");
        let mut put = PutRequest::default();
        assert_eq!(
            ns.put(&mut put).map_err(|s| s.message().to_string()),
            Err("etcdserver: key is not provided".into())
        );
    }
}
