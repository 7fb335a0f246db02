//! `etcdctl make-mirror`: copies a prefix to another cluster at one revision, then replays
//! every later change as one destination txn per source revision, until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use rustcd_api::etcdserverpb::request_op::Request;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use rustcd_client::Client;
use tokio_stream::StreamExt;

use crate::{CtlError, Ctx};
use rustcd_gocompat::prefix_end;

#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long = "dest-prefix", default_value = "")]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long = "no-dest-prefix")]
    pub no_dest_prefix: bool,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long = "dest-cacert", default_value = "")]
    pub dest_cacert: String,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long = "dest-cert", default_value = "")]
    pub dest_cert: String,
    /// Identify secure client using this TLS key file
    #[arg(long = "dest-key", default_value = "")]
    pub dest_key: String,
    /// Disable transport security for client connections
    #[arg(long = "dest-insecure-transport", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dest_insecure_transport: bool,
    pub args: Vec<String>,
}

/// The range of keys under `prefix` (everything for an empty prefix).
fn range_of(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() { (vec![0], vec![0]) } else { (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes())) }
}

pub async fn run(ctx: &Ctx, a: MirrorArgs) -> Result<(), CtlError> {
    let [dest] = a.args.as_slice() else {
        return Err(CtlError::bad_args("make-mirror takes one destination argument"));
    };
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let flags = crate::connect::TlsFlags {
        cacert: &a.dest_cacert,
        cert: &a.dest_cert,
        key: &a.dest_key,
        skip_verify: false,
        insecure_transport: a.dest_insecure_transport,
    };
    let dest_tls = crate::connect::tls_config(&flags, std::slice::from_ref(dest), false)?;
    let dest_prefix = if a.no_dest_prefix {
        String::new()
    } else if a.dest_prefix.is_empty() {
        a.prefix.clone()
    } else {
        a.dest_prefix.clone()
    };
    let rename = |key: &[u8]| -> Vec<u8> {
        let rest = key.strip_prefix(a.prefix.as_bytes()).unwrap_or(key);
        [dest_prefix.as_bytes(), rest].concat()
    };
    let src = ctx.client().await?;
    let dst = Client::connect(&rustcd_client::Config {
        endpoints: vec![dest.clone()],
        credentials: None,
        tls: dest_tls,
        ..ctx.config.clone()
    })
    .await?;
    let total = Arc::new(AtomicU64::new(0));
    let reporter = {
        let total = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                println!("{}", total.load(Ordering::Relaxed));
            }
        })
    };
    let result = mirror(&src, &dst, &a.prefix, &rename, &total).await;
    reporter.abort();
    result
}

async fn mirror(
    src: &Client,
    dst: &Client,
    prefix: &str,
    rename: &dyn Fn(&[u8]) -> Vec<u8>,
    total: &AtomicU64,
) -> Result<(), CtlError> {
    // The base: every key under the prefix at one revision, a page at a time.
    let (mut key, end) = range_of(prefix);
    let mut rev = 0;
    loop {
        let req = RangeRequest {
            key: key.clone().into(),
            range_end: end.clone().into(),
            revision: rev,
            limit: 1000,
            ..Default::default()
        };
        let page = src.kv().range(req).await?.into_inner();
        if rev == 0 {
            rev = page.header.map_or(0, |h| h.revision);
        }
        for kv in &page.kvs {
            let put = PutRequest { key: rename(&kv.key).into(), value: kv.value.clone(), ..Default::default() };
            dst.kv().put(put).await?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => key = [&last.key[..], &[0]].concat(),
            _ => break,
        }
    }
    // Then every change after it, one destination txn per source revision.
    let (key, end) = range_of(prefix);
    let create =
        WatchCreateRequest { key: key.into(), range_end: end.into(), start_revision: rev + 1, ..Default::default() };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await;
    let mut stream = src.watch().watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    while let Some(resp) = stream.next().await {
        let resp = resp?;
        if resp.compact_revision != 0 {
            return Err(CtlError::new(1, "etcdserver: mvcc: required revision has been compacted"));
        }
        let mut ops: Vec<RequestOp> = Vec::new();
        let mut last_rev = 0;
        for ev in &resp.events {
            let kv = ev.kv.clone().unwrap_or_default();
            if last_rev != 0 && kv.mod_revision > last_rev {
                dst.kv().txn(TxnRequest { success: std::mem::take(&mut ops), ..Default::default() }).await?;
            }
            last_rev = kv.mod_revision;
            let request = if ev.r#type == 1 {
                Request::RequestDeleteRange(DeleteRangeRequest { key: rename(&kv.key).into(), ..Default::default() })
            } else {
                Request::RequestPut(PutRequest {
                    key: rename(&kv.key).into(),
                    value: kv.value.clone(),
                    ..Default::default()
                })
            };
            ops.push(RequestOp { request: Some(request) });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            dst.kv().txn(TxnRequest { success: ops, ..Default::default() }).await?;
        }
    }
    drop(tx);
    Ok(())
}
