//! etcd 3.7's `KV.RangeStream`: a range answered in chunks, so that neither side holds the whole
//! answer. Chunks start at 10 keys and double or halve to land near `--max-request-bytes`; every
//! chunk reads at the revision the first one read (writes after the stream began are not
//! seen); header, `more` and `count` ride on the last chunk only. Only the default key order
//! and no revision filters, as etcd.

use std::sync::Arc;

use rustcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use rustcd_api::etcdserverpb::{RangeRequest, RangeResponse, RangeStreamResponse};
use tokio::sync::mpsc;
use tonic::Status;

use super::blocking;
use crate::error::ServerError;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;
use crate::etcdserver::validate;

/// The first chunk's key count.
const FIRST_CHUNK: i64 = 10;

/// etcd's `adjustChunkLimit`: double below half the target size, halve above twice it.
fn next_limit(last: i64, last_size: usize, target: usize) -> i64 {
    let next = if last_size < target / 2 {
        last.saturating_mul(2)
    } else if last_size > target.saturating_mul(2) {
        last / 2
    } else {
        last
    };
    next.max(1)
}

fn check(r: &RangeRequest) -> Result<(), Status> {
    let default_order = r.sort_order == SortOrder::None as i32
        || (r.sort_target == SortTarget::Key as i32 && r.sort_order == SortOrder::Ascend as i32);
    if !default_order {
        return Err(Status::unimplemented("RangeStream does not support custom sort orders"));
    }
    if rustcd_mvcc::has_revision_filters(r) {
        return Err(Status::unimplemented("RangeStream does not support revision filters"));
    }
    Ok(())
}

impl EtcdServer {
    /// Checks the request, waits for a linearizable read's ReadIndex and checks the caller's
    /// permission, then sends the chunks to `out`
    /// from a task of their own; the stream ends when `out` is dropped or closed.
    pub async fn range_stream(
        self: &Arc<Self>,
        caller: &Caller,
        r: RangeRequest,
        out: mpsc::Sender<Result<RangeStreamResponse, Status>>,
    ) -> Result<(), Status> {
        validate::range(&r)?;
        check(&r)?;
        self.may_read(caller, &r).await?;
        let s = self.clone();
        tokio::spawn(async move {
            if let Err(e) = s.send_chunks(r, &out).await {
                let _ = out.send(Err(e.into())).await;
            }
        });
        Ok(())
    }

    async fn send_chunks(
        &self,
        mut r: RangeRequest,
        out: &mpsc::Sender<Result<RangeStreamResponse, Status>>,
    ) -> Result<(), ServerError> {
        let send = |resp: RangeResponse| async {
            out.send(Ok(RangeStreamResponse { range_response: Some(resp) })).await.is_ok()
        };
        if r.count_only {
            let store = self.store().clone();
            let resp = blocking(move || store.range(&r)).await??;
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            send(RangeResponse { header: self.header(rev), count: resp.count, ..Default::default() }).await;
            return Ok(());
        }
        let total_limit = if r.limit > 0 { r.limit } else { i64::MAX };
        let target = self.config().raw.max_request_bytes as usize;
        r.limit = FIRST_CHUNK.min(total_limit);
        let (mut count, mut header_rev) = (0i64, 0i64);
        loop {
            let store = self.store().clone();
            let req = r.clone();
            let mut resp = blocking(move || store.range(&req)).await??;
            if header_rev == 0 {
                header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
                if r.revision == 0 {
                    r.revision = header_rev;
                }
            }
            count += resp.kvs.len() as i64;
            let next_key = match resp.kvs.last() {
                Some(last) if resp.more => {
                    let mut k = last.key.to_vec();
                    k.push(0);
                    Some(k)
                }
                _ => None,
            };
            let done = next_key.is_none() || count == total_limit;
            let size = prost::Message::encoded_len(&resp);
            let mut chunk = RangeResponse { kvs: std::mem::take(&mut resp.kvs), ..Default::default() };
            if done {
                chunk.header = self.header(header_rev);
                chunk.more = resp.more;
                chunk.count = count;
                if let Some(from) = &next_key {
                    let rest = RangeRequest {
                        key: from.clone().into(),
                        range_end: r.range_end.clone(),
                        revision: r.revision,
                        count_only: true,
                        ..Default::default()
                    };
                    let store = self.store().clone();
                    chunk.count += blocking(move || store.range(&rest)).await??.count;
                }
            }
            if !send(chunk).await || done {
                return Ok(());
            }
            if let Some(k) = next_key {
                r.key = k.into();
            }
            r.limit = next_limit(r.limit, size, target).min(total_limit - count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_and_shrink_around_the_target_size() {
        assert_eq!(next_limit(10, 100, 1000), 20);
        assert_eq!(next_limit(10, 700, 1000), 10);
        assert_eq!(next_limit(10, 2100, 1000), 5);
        assert_eq!(next_limit(1, 5000, 1000), 1);
        let sorted = RangeRequest { sort_order: SortOrder::Descend as i32, ..Default::default() };
        assert_eq!(
            check(&sorted).map_err(|s| s.message().to_string()),
            Err("RangeStream does not support custom sort orders".into())
        );
        let filtered = RangeRequest { min_mod_revision: 3, ..Default::default() };
        assert_eq!(check(&filtered).map_err(|s| s.code()), Err(tonic::Code::Unimplemented));
        let key_order = RangeRequest { sort_order: SortOrder::Ascend as i32, ..Default::default() };
        assert!(check(&key_order).is_ok());
    }
}
