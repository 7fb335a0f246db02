//! `etcdctl watch`: watchers on keys, ranges or prefixes over one watch stream, printing each
//! response; with `-- cmd args` it runs the command for every event; with `-i` it reads
//! `watch ...` and `progress` lines from stdin, as etcdctl's interactive mode does.

use std::collections::HashMap;

use clap::{Args, Parser};
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::kv::argify;
use crate::{CtlError, Ctx, print};
use rustcd_gocompat::prefix_end;

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short, long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false)]
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

/// One `watch ...` line of interactive mode.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
enum Line {
    Watch(WatchArgs),
}

/// The create request for `key [range_end]` with the flags.
fn create_request(a: &WatchArgs) -> Result<WatchCreateRequest, CtlError> {
    let keys = &a.args;
    if keys.is_empty() || keys.len() > 2 {
        return Err(CtlError::bad_args(
            "watch in non-interactive mode requires one or two arguments as key or prefix, with range end",
        ));
    }
    if a.prefix && keys.len() > 1 {
        return Err(CtlError::bad_args("`--prefix` and range_end cannot be set at the same time, choose one"));
    }
    let key = crate::arg_bytes(&keys[0]);
    let range_end = match (a.prefix, keys.get(1)) {
        (true, _) if key.is_empty() => vec![0],
        (true, _) => prefix_end(&key),
        (false, Some(end)) => crate::arg_bytes(end),
        (false, None) => Vec::new(),
    };
    let key = if a.prefix && key.is_empty() { vec![0] } else { key };
    Ok(WatchCreateRequest {
        key: key.into(),
        range_end: range_end.into(),
        start_revision: a.rev,
        prev_kv: a.prev_kv,
        progress_notify: a.progress_notify,
        ..Default::default()
    })
}

fn create(req: WatchCreateRequest) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(req)) }
}

/// Prints one response; false once the server canceled the watcher.
fn show(ctx: &Ctx, resp: &WatchResponse, exec: &[String]) -> Result<bool, CtlError> {
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
    let (h, events) = (&resp.header, &resp.events);
    print!("{}", print::watch(ctx.format, h, events, resp.compact_revision, resp.canceled, ctx.style));
    if !exec.is_empty() {
        run_exec(exec, h.as_ref().map_or(0, |h| h.revision), events);
    }
    Ok(!resp.canceled)
}

/// `ETCDCTL_WATCH_KEY` and `ETCDCTL_WATCH_RANGE_END` give the key (and range end) as
/// arguments would; giving both is an error, as in etcdctl.
fn keys_from_env(mut a: WatchArgs) -> Result<WatchArgs, CtlError> {
    let key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let end = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if key.is_empty() {
        if !end.is_empty() {
            return Err(CtlError::bad_args(&format!(
                "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={end:?}"
            )));
        }
        return Ok(a);
    }
    if !a.args.is_empty() {
        return Err(CtlError::bad_args("bad number of arguments (found conflicting environment key)"));
    }
    a.args = std::iter::once(key).chain((!end.is_empty()).then_some(end)).collect();
    Ok(a)
}

pub async fn run(ctx: &Ctx, a: WatchArgs) -> Result<(), CtlError> {
    if a.interactive {
        return interactive(ctx).await;
    }
    let a = keys_from_env(a)?;
    let req = create_request(&a)?;
    let client = ctx.client().await?;
    let (tx, rx) = mpsc::channel(4);
    let _ = tx.send(create(req)).await;
    let mut stream = client.watch().watch(ReceiverStream::new(rx)).await?.into_inner();
    while let Some(resp) = stream.next().await {
        let resp = resp?;
        if resp.created && !resp.canceled {
            continue;
        }
        if !show(ctx, &resp, &a.exec)? {
            break;
        }
    }
    drop(tx);
    Err(CtlError::new(5, "watch is canceled by the server"))
}

/// Interactive mode: each `watch ...` line adds a watcher to the stream, `progress` asks for a
/// progress notification; the session ends with stdin.
async fn interactive(ctx: &Ctx) -> Result<(), CtlError> {
    let client = ctx.client().await?;
    let (tx, rx) = mpsc::channel(16);
    // The call runs beside the prompt: etcd's gRPC server sends the stream's headers only with
    // its first answer, which comes after the first request, which comes from stdin.
    let (resp_tx, mut responses) = mpsc::channel::<Result<WatchResponse, tonic::Status>>(16);
    let mut watch = client.watch();
    tokio::spawn(async move {
        match watch.watch(ReceiverStream::new(rx)).await {
            Ok(s) => {
                let mut s = s.into_inner();
                while let Some(r) = s.next().await {
                    if resp_tx.send(r).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = resp_tx.send(Err(e)).await;
            }
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    // Exec commands by watch id, and those of watchers whose creation is not yet confirmed.
    let mut exec: HashMap<i64, Vec<String>> = HashMap::new();
    let mut pending: std::collections::VecDeque<Vec<String>> = Default::default();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(l)) => l,
                    Ok(None) => return Err(CtlError::new(3, "Error reading watch request line: EOF")),
                    Err(e) => return Err(CtlError::new(3, &format!("Error reading watch request line: {e}"))),
                };
                let words = argify(&line);
                match words.first().map(String::as_str) {
                    Some("watch") => match Line::try_parse_from(&words).map_err(|e| e.to_string()).and_then(|Line::Watch(a)| {
                        keys_from_env(a).and_then(|a| create_request(&a).map(|r| (r, a.exec))).map_err(|e| e.msg)
                    }) {
                        Ok((req, cmd)) => {
                            pending.push_back(cmd);
                            let _ = tx.send(create(req)).await;
                        }
                        Err(e) => eprintln!("Invalid command {line} ({})", e.lines().next().unwrap_or_default()),
                    },
                    Some("progress") => {
                        let req = WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) };
                        let _ = tx.send(req).await;
                    }
                    Some(_) => eprintln!("Invalid command {line} (only support watch)"),
                    None => eprintln!("Invalid command: {line} (watch and progress supported)"),
                }
            }
            resp = responses.recv() => {
                let Some(resp) = resp else { return Err(CtlError::new(5, "watch is canceled by the server")) };
                let resp = resp?;
                if resp.created {
                    exec.insert(resp.watch_id, pending.pop_front().unwrap_or_default());
                    if !resp.canceled {
                        continue;
                    }
                }
                let cmd = exec.get(&resp.watch_id).cloned().unwrap_or_default();
                show(ctx, &resp, &cmd)?;
            }
        }
    }
}

/// Runs the exec form's command once per event with etcdctl's `ETCD_WATCH_*` variables.
/// The values are Go-quoted (`ETCD_WATCH_KEY="foo"`) and the revision is the response's, as
/// etcdctl sets them.
fn run_exec(cmd: &[String], revision: i64, events: &[rustcd_api::mvccpb::Event]) {
    use crate::json::quote;
    for e in events {
        let kv = e.kv.clone().unwrap_or_default();
        let status = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("ETCD_WATCH_REVISION", revision.to_string())
            .env("ETCD_WATCH_EVENT_TYPE", if e.r#type == 1 { "\"DELETE\"" } else { "\"PUT\"" })
            .env("ETCD_WATCH_KEY", quote(&kv.key))
            .env("ETCD_WATCH_VALUE", quote(&kv.value))
            .status();
        if let Err(err) = status {
            eprintln!("command {cmd:?} error ({err})");
        }
    }
}
