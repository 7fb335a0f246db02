//! `etcdctl watch`: one watcher on a key, a range or a prefix, printing each response; with
//! `-- cmd args` it runs the command for every event, as etcdctl's exec form does.

use clap::Args;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{WatchCreateRequest, WatchRequest};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::kv::prefix_end;
use crate::{CtlError, Ctx, print};

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short, long)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// get periodic watch progress notification from server
    #[arg(long = "progress-notify")]
    pub progress_notify: bool,
    /// key [range_end]
    pub args: Vec<String>,
    /// [-- exec-command arg1 arg2 ...]
    #[arg(last = true)]
    pub exec: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: WatchArgs) -> Result<(), CtlError> {
    if a.interactive {
        return Err(CtlError::bad_feature("interactive watch is not supported by this etcdctl yet"));
    }
    let (keys, exec) = (&a.args, &a.exec);
    if keys.is_empty() || keys.len() > 2 {
        return Err(CtlError::bad_args(
            "watch in non-interactive mode requires one or two arguments as key or prefix, with range end",
        ));
    }
    if a.prefix && keys.len() > 1 {
        return Err(CtlError::bad_args("`--prefix` and range_end cannot be set at the same time, choose one"));
    }
    let key = keys[0].as_bytes().to_vec();
    let range_end = match (a.prefix, keys.get(1)) {
        (true, _) if key.is_empty() => vec![0],
        (true, _) => prefix_end(&key),
        (false, Some(end)) => end.as_bytes().to_vec(),
        (false, None) => Vec::new(),
    };
    let key = if a.prefix && key.is_empty() { vec![0] } else { key };
    let create = WatchCreateRequest {
        key: key.into(),
        range_end: range_end.into(),
        start_revision: a.rev,
        prev_kv: a.prev_kv,
        progress_notify: a.progress_notify,
        ..Default::default()
    };
    let client = ctx.client().await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let _ = tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await;
    let mut stream = client.watch().watch(ReceiverStream::new(rx)).await?.into_inner();
    while let Some(resp) = stream.next().await {
        let resp = resp?;
        if resp.created && !resp.canceled {
            continue;
        }
        if resp.canceled {
            let why = if resp.compact_revision > 0 {
                "etcdserver: mvcc: required revision has been compacted".to_string()
            } else {
                resp.cancel_reason.clone()
            };
            eprintln!("watch was canceled ({why})");
        } else if resp.events.is_empty() {
            println!("progress notify: {}", resp.header.as_ref().map_or(0, |h| h.revision));
        }
        ctx.format.check_kv()?;
        print!(
            "{}",
            print::watch(ctx.format, &resp.header, &resp.events, resp.compact_revision, resp.canceled, ctx.style)
        );
        if !exec.is_empty() {
            run_exec(exec, &resp.events)?;
        }
        if resp.canceled {
            break;
        }
    }
    drop(tx);
    Err(CtlError::new(5, "watch is canceled by the server"))
}

/// Runs the exec form's command once per event with etcdctl's `ETCD_WATCH_*` variables.
fn run_exec(cmd: &[String], events: &[rustcd_api::mvccpb::Event]) -> Result<(), CtlError> {
    for e in events {
        let kv = e.kv.clone().unwrap_or_default();
        let rev = kv.mod_revision.to_string();
        let status = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("ETCD_WATCH_REVISION", rev)
            .env("ETCD_WATCH_EVENT_TYPE", if e.r#type == 1 { "DELETE" } else { "PUT" })
            .env("ETCD_WATCH_KEY", String::from_utf8_lossy(&kv.key).as_ref())
            .env("ETCD_WATCH_VALUE", String::from_utf8_lossy(&kv.value).as_ref())
            .status();
        if let Err(err) = status {
            eprintln!("command {cmd:?} error ({err})");
        }
    }
    Ok(())
}
