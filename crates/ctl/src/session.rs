//! `etcdctl lock` and `etcdctl elect`: a session lease kept alive in the background while the
//! server's v3lock and v3election services hold the lock or the leadership, released on exit
//! or on SIGINT/SIGTERM, as clientv3's concurrency package does for etcd's etcdctl.

use std::time::Duration;

use clap::Args;
use rustcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, RangeRequest, RangeResponse,
};
use rustcd_api::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use rustcd_api::v3lockpb::{LockRequest, UnlockRequest};
use rustcd_client::Client;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;

use crate::{CtlError, Ctx, print};

#[derive(Args, Debug)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value_t = 10)]
    pub ttl: i64,
    /// lockname
    pub name: String,
    /// [exec-command arg1 arg2 ...]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short, long)]
    pub listen: bool,
    pub args: Vec<String>,
}

/// A lease kept alive until dropped; `lost` fires if the server stops renewing it.
struct Session {
    lease: i64,
    lost: oneshot::Receiver<()>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Session {
    async fn start(ctx: &Ctx, c: &Client, ttl: i64) -> Result<Session, CtlError> {
        let grant = ctx.call(c.lease().lease_grant(LeaseGrantRequest { ttl, id: 0 })).await?;
        let lease = grant.id;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        // The first keep-alive goes out with the call: etcd's gRPC server sends the stream's
        // headers only with its first answer, which the call waits for.
        let _ = tx.send(LeaseKeepAliveRequest { id: lease }).await;
        let mut stream =
            c.lease().lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
        let (lost_tx, lost) = oneshot::channel();
        let period = Duration::from_millis((grant.ttl.max(1) as u64 * 1000) / 3);
        let keeper = tokio::spawn(async move {
            loop {
                match stream.next().await {
                    Some(Ok(r)) if r.ttl > 0 => {}
                    _ => break,
                }
                tokio::time::sleep(period).await;
                if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                    break;
                }
            }
            let _ = lost_tx.send(());
        });
        Ok(Session { lease, lost, keeper })
    }

    async fn close(self, ctx: &Ctx, c: &Client) {
        self.keeper.abort();
        let _ = ctx.call(c.lease().lease_revoke(LeaseRevokeRequest { id: self.lease })).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn get_key(ctx: &Ctx, c: &Client, key: &[u8]) -> Result<RangeResponse, CtlError> {
    ctx.call(c.kv().range(RangeRequest { key: key.to_vec().into(), ..Default::default() })).await
}

pub async fn lock(ctx: &Ctx, a: LockArgs) -> Result<(), CtlError> {
    if a.ttl <= 0 {
        return Err(CtlError::bad_args("--ttl must be positive"));
    }
    let c = ctx.client().await?;
    let mut session = Session::start(ctx, &c, a.ttl).await?;
    let mut locker = c.lock();
    let locked = tokio::select! {
        r = locker.lock(LockRequest { name: crate::arg_bytes(&a.name).into(), lease: session.lease }) => r?.into_inner(),
        _ = interrupted() => {
            session.close(ctx, &c).await;
            return Err(CtlError::new(5, "interrupted"));
        }
    };
    let key = locked.key.clone();
    let result = if let Some((prog, args)) = a.cmd.split_first() {
        let rev = locked.header.map_or(0, |h| h.revision);
        let status = tokio::process::Command::new(prog)
            .args(args)
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).as_ref())
            .env("ETCD_LOCK_REV", rev.to_string())
            .status()
            .await;
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(CtlError::new(1, &format!("exit status {}", s.code().unwrap_or(1)))),
            Err(e) => Err(CtlError::new(1, &e.to_string())),
        }
    } else {
        let held = get_key(ctx, &c, &key).await?;
        if held.kvs.is_empty() {
            return Err(CtlError::new(1, "lock lost on init"));
        }
        print!("{}", print::get(ctx.format, &held, ctx.style));
        tokio::select! {
            _ = interrupted() => Ok(()),
            _ = &mut session.lost => Err(CtlError::new(1, "lock: session expired")),
        }
    };
    let _ = ctx.call(c.lock().unlock(UnlockRequest { key })).await;
    session.close(ctx, &c).await;
    result
}

/// The session TTL of a campaign, clientv3's default.
const ELECTION_TTL: i64 = 60;

pub async fn elect(ctx: &Ctx, a: ElectArgs) -> Result<(), CtlError> {
    let c = ctx.client().await?;
    if a.listen {
        let [name] = a.args.as_slice() else {
            return Err(CtlError::bad_args("elect takes one election name argument in listen mode"));
        };
        let mut stream =
            c.election().observe(LeaderRequest { name: crate::arg_bytes(name).into() }).await?.into_inner();
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some(Ok(r)) => {
                        let resp = RangeResponse { header: r.header, kvs: r.kv.into_iter().collect(), more: false, count: 1 };
                        print!("{}", print::get(ctx.format, &resp, ctx.style));
                    }
                    _ => return Err(CtlError::new(1, "elect: observer lost")),
                },
                _ = interrupted() => return Ok(()),
            }
        }
    }
    let [name, proposal] = a.args.as_slice() else {
        return Err(CtlError::bad_args("elect takes one election name argument and one proposal argument"));
    };
    let mut session = Session::start(ctx, &c, ELECTION_TTL).await?;
    let req = CampaignRequest {
        name: crate::arg_bytes(name).into(),
        lease: session.lease,
        value: crate::arg_bytes(proposal).into(),
    };
    let mut elections = c.election();
    let leader = tokio::select! {
        r = elections.campaign(req) => r?.into_inner().leader,
        _ = interrupted() => {
            session.close(ctx, &c).await;
            return Err(CtlError::new(5, "interrupted"));
        }
    };
    let Some(leader) = leader else { return Err(CtlError::new(1, "elect: no leader key in the campaign response")) };
    let held = get_key(ctx, &c, &leader.key).await?;
    print!("{}", print::get(ctx.format, &held, ctx.style));
    let result = tokio::select! {
        _ = interrupted() => Ok(()),
        _ = &mut session.lost => Err(CtlError::new(1, "elect: session expired")),
    };
    let _ = ctx.call(c.election().resign(ResignRequest { leader: Some(leader) })).await;
    session.close(ctx, &c).await;
    result
}
