//! `etcdctl alarm`, `defrag` and `snapshot`: maintenance of the members' storage.

use clap::Subcommand;
use rustcd_api::etcdserverpb::alarm_request::AlarmAction;
use rustcd_api::etcdserverpb::{AlarmRequest, AlarmResponse, DefragmentRequest, SnapshotRequest};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use crate::json::{Obj, human_bytes};
use crate::print::{Format, emit, with_header};
use crate::{CtlError, Ctx};

#[derive(Subcommand, Debug)]
pub enum AlarmCmd {
    /// Disarms all alarms
    Disarm,
    /// Lists all alarms
    List,
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Stores an etcd node backend snapshot to a given file
    Save { args: Vec<String> },
    /// Gets backend snapshot status of a given file
    #[command(
        long_about = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are hash, revision, total keys, total size."
    )]
    Status { args: Vec<String> },
    /// Restores an etcd member snapshot to an etcd directory
    #[command(mut_arg("data_dir", |a| a.help("Path to the data directory")))]
    Restore(rustcd_utl::snapshot::RestoreArgs),
}

#[derive(clap::Args, Debug)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long)]
    pub cluster: bool,
    #[arg(
        long = "data-dir",
        default_value = "",
        help = "Optional. If present, defragments a data directory not in use by etcd."
    )]
    pub data_dir: String,
}

const ALARM_NAMES: [&str; 3] = ["NONE", "NOSPACE", "CORRUPT"];

pub async fn alarm(ctx: &Ctx, cmd: AlarmCmd) -> Result<(), CtlError> {
    let c = ctx.client().await?;
    let mut m = c.maintenance();
    let list = ctx.call(m.alarm(AlarmRequest { action: AlarmAction::Get as i32, ..Default::default() })).await?;
    let shown = match cmd {
        AlarmCmd::List => list.alarms.clone(),
        AlarmCmd::Disarm => {
            let mut disarmed = Vec::new();
            for a in list.alarms.clone() {
                let req =
                    AlarmRequest { action: AlarmAction::Deactivate as i32, member_id: a.member_id, alarm: a.alarm };
                disarmed.extend(ctx.call(m.alarm(req)).await?.alarms);
            }
            disarmed
        }
    };
    let text = || {
        shown
            .iter()
            .map(|a| {
                let name = ALARM_NAMES.get(a.alarm as usize).copied().unwrap_or("UNKNOWN");
                format!("memberID:{} alarm:{name} \n", a.member_id)
            })
            .collect()
    };
    let json = || {
        let alarms =
            shown.iter().map(|a| Obj::new().int("memberID", a.member_id).int("alarm", a.alarm).end()).collect();
        with_header(&list.header, |o| o.list("alarms", alarms))
    };
    let resp = AlarmResponse { header: list.header, alarms: shown.clone() };
    emit(ctx.format, &resp, json, text);
    Ok(())
}

/// Defragments each endpoint in turn, as etcdctl does.
pub async fn defrag(ctx: &Ctx, a: DefragArgs) -> Result<(), CtlError> {
    if !a.data_dir.is_empty() {
        return Err(CtlError::bad_feature(
            "defragmenting a data directory offline is not supported by this etcdctl yet",
        ));
    }
    let mut failed = false;
    for ep in &crate::cluster::endpoints(ctx, a.cluster).await? {
        let res = match rustcd_client::Client::connect_one(ep, &ctx.config).await {
            Ok(c) => ctx.call(c.maintenance().defragment(DefragmentRequest {})).await.map(|_| ()),
            Err(e) => Err(e.into()),
        };
        match res {
            Ok(()) => println!("Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{ep}] ({})", e.msg);
                failed = true;
            }
        }
    }
    if failed { Err(CtlError::new(1, "").silent()) } else { Ok(()) }
}

pub async fn snapshot(ctx: &Ctx, cmd: SnapshotCmd) -> Result<(), CtlError> {
    match cmd {
        SnapshotCmd::Save { args } => {
            let [path] = args.as_slice() else {
                return Err(CtlError::bad_args("snapshot save expects one argument"));
            };
            if ctx.config.endpoints.len() != 1 {
                return Err(CtlError::bad_args(&format!(
                    "snapshot must be requested to one selected node, not multiple [{}]",
                    ctx.config.endpoints.join(" ")
                )));
            }
            let c = ctx.client().await?;
            // etcdctl exits with ExitInterrupted (5) when the snapshot cannot be saved.
            let interrupted = |e: CtlError| CtlError { code: 5, ..e };
            let mut stream =
                c.maintenance().snapshot(SnapshotRequest {}).await.map_err(|e| interrupted(e.into()))?.into_inner();
            let partial = format!("{path}.part");
            let io = |e: std::io::Error| CtlError::new(5, &format!("could not write snapshot {partial}: {e}"));
            let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
            let mut size = 0u64;
            let progress = rustcd_utl::progress::Progress::new("saving");
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| interrupted(e.into()))?;
                size += chunk.blob.len() as u64;
                progress.update(size, size + chunk.remaining_bytes);
                file.write_all(&chunk.blob).await.map_err(io)?;
            }
            progress.finish();
            file.sync_all().await.map_err(io)?;
            tokio::fs::rename(&partial, path).await.map_err(io)?;
            println!("Snapshot saved at {path}");
            eprintln!("snapshot size {}", human_bytes(size));
            Ok(())
        }
        // etcd 3.5's etcdctl hands these to etcdutl's code, and so does this one.
        SnapshotCmd::Status { args } => {
            let format = match ctx.format {
                Format::Simple => "simple",
                Format::Json => "json",
                Format::Fields => "fields",
                Format::Table => "table",
                Format::Protobuf => "protobuf",
            };
            print!("{}", rustcd_utl::snapshot::status(&args, format).map_err(utl_error)?);
            Ok(())
        }
        SnapshotCmd::Restore(a) => {
            // etcdctl's restore logs its steps (`restoring snapshot`, `added member`, ...).
            rustcd_utl::log_to_stderr();
            rustcd_utl::snapshot::restore(&a).map_err(utl_error)
        }
    }
}

fn utl_error(e: rustcd_utl::UtlError) -> CtlError {
    CtlError::new(e.code, &e.msg)
}
