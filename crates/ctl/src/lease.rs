//! `etcdctl lease grant|revoke|timetolive|list|keep-alive`.

use clap::Subcommand;
use rustcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
};
use tokio_stream::StreamExt;

use crate::json::Obj;
use crate::print::{Format, header_json, protobuf, write_raw};
use crate::{CtlError, Ctx};

#[derive(Subcommand, Debug)]
pub enum LeaseCmd {
    /// Creates leases
    Grant { args: Vec<String> },
    /// Revokes leases
    Revoke { args: Vec<String> },
    /// Get lease information
    Timetolive {
        /// Get keys attached to this lease
        #[arg(long)]
        keys: bool,
        args: Vec<String>,
    },
    /// List all active leases
    List,
    /// Keeps leases alive (renew)
    KeepAlive {
        /// Resets the keep-alive time to its original value and exits immediately
        #[arg(long)]
        once: bool,
        args: Vec<String>,
    },
}

fn lease_id(args: &[String], cmd: &str) -> Result<i64, CtlError> {
    let [id] = args else { return Err(CtlError::bad_args(&format!("{cmd} command needs 1 argument"))) };
    i64::from_str_radix(id, 16).or_else(|_| u64::from_str_radix(id, 16).map(|v| v as i64)).map_err(|_| {
        CtlError::bad_args(&format!(
            "bad lease ID arg (strconv.ParseInt: parsing {id:?}: invalid syntax), expecting ID in Hex"
        ))
    })
}

pub async fn run(ctx: &Ctx, cmd: LeaseCmd) -> Result<(), CtlError> {
    ctx.format.check_kv()?;
    let json = ctx.format == Format::Json;
    // clientv3's lease responses embed the header; etcdctl's protobuf printer marshals just it.
    let pb = ctx.format == Format::Protobuf;
    match cmd {
        LeaseCmd::Grant { args } => grant(ctx, &args, json, pb).await,
        LeaseCmd::Revoke { args } => revoke(ctx, &args, json, pb).await,
        LeaseCmd::Timetolive { keys, args } => time_to_live(ctx, keys, &args, json, pb).await,
        LeaseCmd::List => list(ctx, json, pb).await,
        LeaseCmd::KeepAlive { once, args } => keep_alive(ctx, once, &args, pb).await,
    }
}

async fn grant(ctx: &Ctx, args: &[String], json: bool, pb: bool) -> Result<(), CtlError> {
    let [ttl] = args else {
        return Err(CtlError::bad_args("lease grant command needs TTL argument"));
    };
    let ttl: i64 = ttl
        .parse()
        .map_err(|_| CtlError::bad_args(&format!("bad TTL (strconv.ParseInt: parsing {ttl:?}: invalid syntax)")))?;
    let r = retried!(ctx, lease.lease_grant(LeaseGrantRequest { ttl, id: 0 }))?;
    if pb {
        write_raw(&protobuf(&r.header.unwrap_or_default()));
    } else if json {
        println!(
            "{}",
            flat_header(&r.header)
                .raw("ID", &r.id.to_string())
                .raw("TTL", &r.ttl.to_string())
                .raw("Error", "\"\"")
                .end()
        );
    } else {
        println!("lease {:016x} granted with TTL({}s)", r.id, r.ttl);
    }
    Ok(())
}

async fn revoke(ctx: &Ctx, args: &[String], json: bool, pb: bool) -> Result<(), CtlError> {
    let id = lease_id(args, "lease revoke")?;
    let r = ctx
        .request(|c| async move { c.lease().lease_revoke(LeaseRevokeRequest { id }).await })
        .await
        .map_err(|e| CtlError::new(e.code, &format!("failed to revoke lease ({})", e.msg)))?;
    if pb {
        // etcdctl cannot marshal clientv3's revoke response and says so.
        let h = r.header.unwrap_or_default();
        return Err(CtlError::bad_feature(&format!(
            "marshal unsupported for type clientv3.LeaseRevokeResponse ({{cluster_id:{} member_id:{} revision:{} raft_term:{} }})",
            h.cluster_id, h.member_id, h.revision, h.raft_term
        )));
    } else if json {
        println!("{}", Obj::new().obj("header", r.header.as_ref().map(header_json)).end());
    } else {
        println!("lease {id:016x} revoked");
    }
    Ok(())
}

async fn time_to_live(ctx: &Ctx, keys: bool, args: &[String], json: bool, pb: bool) -> Result<(), CtlError> {
    let id = lease_id(args, "lease timetolive")?;
    let r = retried!(ctx, lease.lease_time_to_live(LeaseTimeToLiveRequest { id, keys }))?;
    if pb {
        write_raw(&protobuf(&r.header.unwrap_or_default()));
    } else if json {
        let ks: Vec<String> = r.keys.iter().map(|k| format!("\"{}\"", crate::json::base64(k))).collect();
        let ks = if ks.is_empty() { "null".to_string() } else { format!("[{}]", ks.join(",")) };
        let o = flat_header(&r.header)
            .raw("id", &r.id.to_string())
            .raw("ttl", &r.ttl.to_string())
            .raw("granted-ttl", &r.granted_ttl.to_string())
            .raw("keys", &ks);
        println!("{}", o.end());
    } else if r.granted_ttl == 0 && r.ttl == -1 {
        println!("lease {id:016x} already expired");
    } else {
        let mut line = format!("lease {id:016x} granted with TTL({}s), remaining({}s)", r.granted_ttl, r.ttl);
        if keys {
            let names: Vec<String> = r.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
            line.push_str(&format!(", attached keys([{}])", names.join(" ")));
        }
        println!("{line}");
    }
    Ok(())
}

async fn list(ctx: &Ctx, json: bool, pb: bool) -> Result<(), CtlError> {
    let r = retried!(ctx, lease.lease_leases(LeaseLeasesRequest {}))?;
    if pb {
        write_raw(&protobuf(&r.header.unwrap_or_default()));
    } else if json {
        let ls: Vec<String> = r.leases.iter().map(|l| format!("{{\"ID\":{}}}", l.id)).collect();
        println!("{}", Obj::new().obj("header", r.header.as_ref().map(header_json)).list("leases", ls).end());
    } else {
        println!("found {} leases", r.leases.len());
        for l in &r.leases {
            println!("{:016x}", l.id);
        }
    }
    Ok(())
}

async fn keep_alive(ctx: &Ctx, once: bool, args: &[String], pb: bool) -> Result<(), CtlError> {
    let id = lease_id(args, "lease keep-alive")?;
    let c = ctx.client().await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx.send(LeaseKeepAliveRequest { id }).await;
    let mut stream = c.lease().lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    loop {
        let Some(r) = stream.next().await else { break };
        let r = r?;
        if r.ttl <= 0 {
            break;
        }
        if pb {
            write_raw(&protobuf(&r.header.unwrap_or_default()));
        } else {
            println!("lease {:016x} keepalived with TTL({})", r.id, r.ttl);
        }
        if once {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs((r.ttl as u64 / 3).max(1))).await;
        if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            break;
        }
    }
    if once {
        return Err(CtlError::new(1, "requested lease not found"));
    }
    println!("lease {id:016x} expired or revoked.");
    Ok(())
}

/// clientv3's lease responses embed `*pb.ResponseHeader`, so its fields appear at the top level.
fn flat_header(h: &Option<rustcd_api::etcdserverpb::ResponseHeader>) -> Obj {
    let h = h.unwrap_or_default();
    Obj::new()
        .int("cluster_id", h.cluster_id)
        .int("member_id", h.member_id)
        .int("revision", h.revision)
        .int("raft_term", h.raft_term)
}
