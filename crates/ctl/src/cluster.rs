//! `etcdctl member ...`, `endpoint status|health|hashkv` and `move-leader`: commands that talk
//! to each member on its own.

use std::time::Instant;

use clap::Subcommand;
use rustcd_api::etcdserverpb::{
    HashKvRequest, Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, MoveLeaderRequest, RangeRequest, StatusRequest, StatusResponse,
};
use rustcd_client::Client;

use crate::json::{Obj, go_duration, human_bytes, string};
use crate::print::{Format, emit, header_json, member_json, protobuf, table, with_header, write_raw};
use crate::{CtlError, Ctx};

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Adds a member into the cluster
    Add {
        #[arg(long = "peer-urls", default_value = "", help = "comma separated peer URLs for the new member.")]
        peer_urls: String,
        /// indicates if the new member is raft learner
        #[arg(long)]
        learner: bool,
        args: Vec<String>,
    },
    /// Removes a member from the cluster
    Remove { args: Vec<String> },
    /// Updates a member in the cluster
    Update {
        #[arg(long = "peer-urls", default_value = "", help = "comma separated peer URLs for the updated member.")]
        peer_urls: String,
        args: Vec<String>,
    },
    /// Lists all members in the cluster
    #[command(
        long_about = "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.
The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner."
    )]
    List,
    /// Promotes a non-voting member in the cluster
    #[command(long_about = "Promotes a non-voting learner member to a voting one in the cluster.")]
    Promote { args: Vec<String> },
}

#[derive(clap::Args, Debug)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true)]
    pub cluster: bool,
    #[command(subcommand)]
    pub cmd: EndpointCmd,
}

#[derive(Subcommand, Debug)]
pub enum EndpointCmd {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    #[command(
        long_about = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors."
    )]
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

fn member_id(args: &[String]) -> Result<u64, CtlError> {
    let [id] = args else { return Err(CtlError::bad_args("member ID is not provided")) };
    u64::from_str_radix(id, 16).map_err(|_| {
        CtlError::bad_args(&format!(
            "bad member ID arg (strconv.ParseUint: parsing {id:?}: invalid syntax), expecting ID in Hex"
        ))
    })
}

fn urls(s: &str) -> Vec<String> {
    s.split(',').filter(|u| !u.is_empty()).map(str::to_string).collect()
}

fn member_row(m: &Member) -> Vec<String> {
    let status = if m.name.is_empty() { "unstarted" } else { "started" };
    vec![
        format!("{:x}", m.id),
        status.to_string(),
        m.name.clone(),
        m.peer_ur_ls.join(","),
        m.client_ur_ls.join(","),
        m.is_learner.to_string(),
    ]
}

/// `{"header":...,"members":[...]}`.
fn members_json(h: &Option<rustcd_api::etcdserverpb::ResponseHeader>, members: &[Member]) -> String {
    with_header(h, |o| o.list("members", members.iter().map(member_json).collect()))
}

pub async fn member(ctx: &Ctx, cmd: MemberCmd) -> Result<(), CtlError> {
    match cmd {
        MemberCmd::List => {
            let r = retried!(ctx, cluster.member_list(MemberListRequest { linearizable: false }))?;
            match ctx.format {
                Format::Json => {
                    let o = Obj::new()
                        .obj("header", r.header.as_ref().map(header_json))
                        .list("members", r.members.iter().map(member_json).collect());
                    println!("{}", o.end());
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = r.members.iter().map(member_row).collect();
                    let headers = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"];
                    print!("{}", table(&headers, &rows));
                }
                Format::Protobuf => write_raw(&protobuf(&r)),
                Format::Fields => print!("{}", member_fields(&r)),
                _ => r.members.iter().for_each(|m| println!("{}", member_row(m).join(", "))),
            }
        }
        MemberCmd::Add { peer_urls, learner, args } => {
            let [name] = args.as_slice() else { return Err(CtlError::bad_args("member name not provided")) };
            let peers = urls(&peer_urls);
            if peers.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let req = MemberAddRequest { peer_ur_ls: peers.clone(), is_learner: learner };
            let r = retried!(ctx, cluster.member_add(req))?;
            let m = r.member.clone().unwrap_or_default();
            let cid = r.header.as_ref().map_or(0, |h| h.cluster_id);
            if ctx.format == Format::Json {
                let o = Obj::new()
                    .obj("header", r.header.as_ref().map(header_json))
                    .obj("member", Some(member_json(&m)))
                    .list("members", r.members.iter().map(member_json).collect());
                println!("{}", o.end());
                return Ok(());
            }
            if ctx.format == Format::Protobuf {
                write_raw(&protobuf(&r));
                return Ok(());
            }
            println!("Member {:16x} added to cluster {cid:16x}", m.id);
            let mut conf = Vec::new();
            for x in &r.members {
                let n = if x.id == m.id { name.clone() } else { x.name.clone() };
                conf.extend(x.peer_ur_ls.iter().map(|u| format!("{n}={u}")));
            }
            println!();
            println!("ETCD_NAME={}", crate::json::quote(name.as_bytes()));
            println!("ETCD_INITIAL_CLUSTER={}", crate::json::quote(conf.join(",").as_bytes()));
            println!("ETCD_INITIAL_ADVERTISE_PEER_URLS={}", crate::json::quote(peers.join(",").as_bytes()));
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        MemberCmd::Remove { args } => {
            let id = member_id(&args)?;
            let r = retried!(ctx, cluster.member_remove(MemberRemoveRequest { id }))?;
            let cid = r.header.as_ref().map_or(0, |h| h.cluster_id);
            let json = || members_json(&r.header, &r.members);
            emit(ctx.format, &r, json, || format!("Member {id:16x} removed from cluster {cid:16x}\n"));
        }
        MemberCmd::Update { peer_urls, args } => {
            let id = member_id(&args)?;
            let r = retried!(ctx, cluster.member_update(MemberUpdateRequest { id, peer_ur_ls: urls(&peer_urls) }))?;
            let cid = r.header.as_ref().map_or(0, |h| h.cluster_id);
            let json = || members_json(&r.header, &r.members);
            emit(ctx.format, &r, json, || format!("Member {id:16x} updated in cluster {cid:16x}\n"));
        }
        MemberCmd::Promote { args } => {
            let id = member_id(&args)?;
            let r = retried!(ctx, cluster.member_promote(MemberPromoteRequest { id }))?;
            let cid = r.header.as_ref().map_or(0, |h| h.cluster_id);
            let json = || members_json(&r.header, &r.members);
            emit(ctx.format, &r, json, || format!("Member {id:16x} promoted in cluster {cid:16x}\n"));
        }
    }
    Ok(())
}

/// `--endpoints`, or with `--cluster` every member's client URLs.
pub async fn endpoints(ctx: &Ctx, cluster: bool) -> Result<Vec<String>, CtlError> {
    if !cluster {
        return Ok(ctx.config.endpoints.clone());
    }
    let r = retried!(ctx, cluster.member_list(MemberListRequest { linearizable: false }))?;
    Ok(r.members.iter().flat_map(|m| m.client_ur_ls.clone()).collect())
}

async fn one(ctx: &Ctx, ep: &str) -> Result<Client, CtlError> {
    Ok(Client::connect_one(ep, &ctx.config).await?)
}

/// Asks each endpoint on its own. A failure is reported on stderr as etcdctl words it
/// ("Failed to get the {what} of endpoint ...") and makes the second value true.
async fn each_endpoint<T, Fut>(
    ctx: &Ctx,
    eps: Vec<String>,
    what: &str,
    ask: impl Fn(Client) -> Fut,
) -> (Vec<(String, T)>, bool)
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut ok = Vec::new();
    let mut failed = false;
    for ep in eps {
        let res = match one(ctx, &ep).await {
            Ok(c) => ctx.call(ask(c)).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(r) => ok.push((ep, r)),
            Err(e) => {
                eprintln!("Failed to get the {what} of endpoint {ep} ({})", e.msg);
                failed = true;
            }
        }
    }
    (ok, failed)
}

fn status_json(s: &StatusResponse) -> String {
    Obj::new()
        .obj("header", s.header.as_ref().map(header_json))
        .str("version", &s.version)
        .int("dbSize", s.db_size)
        .int("leader", s.leader)
        .int("raftIndex", s.raft_index)
        .int("raftTerm", s.raft_term)
        .int("raftAppliedIndex", s.raft_applied_index)
        .list("errors", s.errors.iter().map(|e| string(e)).collect())
        .int("dbSizeInUse", s.db_size_in_use)
        .bool("isLearner", s.is_learner)
        .end()
}

fn status_row(ep: &str, s: &StatusResponse) -> Vec<String> {
    let id = s.header.as_ref().map_or(0, |h| h.member_id);
    vec![
        ep.to_string(),
        format!("{id:x}"),
        s.version.clone(),
        human_bytes(s.db_size.max(0) as u64),
        (s.leader == id).to_string(),
        s.is_learner.to_string(),
        s.raft_term.to_string(),
        s.raft_index.to_string(),
        s.raft_applied_index.to_string(),
        s.errors.join(", "),
    ]
}

pub async fn endpoint(ctx: &Ctx, cluster: bool, cmd: EndpointCmd) -> Result<(), CtlError> {
    let eps = endpoints(ctx, cluster).await?;
    match cmd {
        EndpointCmd::Status => endpoint_status(ctx, eps).await,
        EndpointCmd::Health => endpoint_health(ctx, eps).await,
        EndpointCmd::Hashkv { rev } => endpoint_hashkv(ctx, eps, rev).await,
    }
}

async fn endpoint_status(ctx: &Ctx, eps: Vec<String>) -> Result<(), CtlError> {
    let (ok, failed) =
        each_endpoint(ctx, eps, "status", |c| async move { c.maintenance().status(StatusRequest {}).await }).await;
    ctx.format.check_not_protobuf()?;
    match ctx.format {
        Format::Json => {
            let items: Vec<String> = ok
                .iter()
                .map(|(ep, s)| Obj::new().raw("Endpoint", &string(ep)).raw("Status", &status_json(s)).end())
                .collect();
            println!("[{}]", items.join(","));
        }
        Format::Table => {
            let headers = [
                "ENDPOINT",
                "ID",
                "VERSION",
                "DB SIZE",
                "IS LEADER",
                "IS LEARNER",
                "RAFT TERM",
                "RAFT INDEX",
                "RAFT APPLIED INDEX",
                "ERRORS",
            ];
            let rows: Vec<Vec<String>> = ok.iter().map(|(ep, s)| status_row(ep, s)).collect();
            print!("{}", table(&headers, &rows));
        }
        _ => ok.iter().for_each(|(ep, s)| println!("{}", status_row(ep, s).join(", "))),
    }
    if failed {
        return Err(CtlError::new(1, "").silent());
    }
    Ok(())
}

async fn endpoint_health(ctx: &Ctx, eps: Vec<String>) -> Result<(), CtlError> {
    let mut rows = Vec::new();
    for ep in eps {
        let start = Instant::now();
        let res = match one(ctx, &ep).await {
            Ok(c) => {
                let get = RangeRequest { key: b"health".to_vec().into(), ..Default::default() };
                match ctx.call(c.kv().range(get)).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.msg.contains("permission denied") => Ok(()),
                    Err(e) => Err(e.msg),
                }
            }
            Err(e) => Err(e.msg),
        };
        rows.push((ep, res, go_duration(start.elapsed())));
    }
    let unhealthy = rows.iter().any(|(_, r, _)| r.is_err());
    ctx.format.check_not_protobuf()?;
    match ctx.format {
        Format::Json => {
            let items: Vec<String> = rows
                .iter()
                .map(|(ep, r, took)| {
                    Obj::new()
                        .raw("endpoint", &string(ep))
                        .raw("health", &r.is_ok().to_string())
                        .raw("took", &string(took))
                        .str("error", r.as_ref().err().map_or("", |e| e))
                        .end()
                })
                .collect();
            println!("[{}]", items.join(","));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|(ep, r, took)| {
                    let err = r.as_ref().err().cloned().unwrap_or_default();
                    vec![ep.clone(), r.is_ok().to_string(), took.clone(), err]
                })
                .collect();
            print!("{}", table(&["ENDPOINT", "HEALTH", "TOOK", "ERROR"], &rows));
        }
        _ => {
            for (ep, r, took) in &rows {
                match r {
                    Ok(()) => eprintln!("{ep} is healthy: successfully committed proposal: took = {took}"),
                    Err(e) => eprintln!("{ep} is unhealthy: failed to commit proposal: {e}"),
                }
            }
        }
    }
    if unhealthy {
        return Err(CtlError::new(1, "unhealthy cluster"));
    }
    Ok(())
}

async fn endpoint_hashkv(ctx: &Ctx, eps: Vec<String>, rev: i64) -> Result<(), CtlError> {
    let (ok, failed) =
        each_endpoint(
            ctx,
            eps,
            "hash",
            |c| async move { c.maintenance().hash_kv(HashKvRequest { revision: rev }).await },
        )
        .await;
    ctx.format.check_not_protobuf()?;
    match ctx.format {
        Format::Json => {
            let items: Vec<String> = ok
                .iter()
                .map(|(ep, r)| {
                    let h = Obj::new()
                        .obj("header", r.header.as_ref().map(header_json))
                        .int("hash", r.hash)
                        .int("compact_revision", r.compact_revision)
                        .end();
                    Obj::new().raw("Endpoint", &string(ep)).raw("HashKV", &h).end()
                })
                .collect();
            println!("[{}]", items.join(","));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = ok.iter().map(|(ep, r)| vec![ep.clone(), r.hash.to_string()]).collect();
            print!("{}", table(&["ENDPOINT", "HASH"], &rows));
        }
        _ => ok.iter().for_each(|(ep, r)| println!("{ep}, {}", r.hash)),
    }
    if failed {
        return Err(CtlError::new(1, "").silent());
    }
    Ok(())
}

/// Finds the leader among `--endpoints` and asks it to hand leadership to `target`.
pub async fn move_leader(ctx: &Ctx, args: &[String]) -> Result<(), CtlError> {
    let [target] = args else { return Err(CtlError::bad_args("move-leader command needs 1 argument")) };
    let target_id = u64::from_str_radix(target, 16)
        .map_err(|_| CtlError::bad_args(&format!("strconv.ParseUint: parsing {target:?}: invalid syntax")))?;
    for ep in &ctx.config.endpoints {
        let c = one(ctx, ep).await?;
        let s = ctx.call(c.maintenance().status(StatusRequest {})).await?;
        let id = s.header.as_ref().map_or(0, |h| h.member_id);
        if id == s.leader {
            ctx.call(c.maintenance().move_leader(MoveLeaderRequest { target_id })).await?;
            println!("Leadership transferred from {id:x} to {target_id:x}");
            return Ok(());
        }
    }
    Err(CtlError::bad_args(&format!("no leader endpoint given at [{}]", ctx.config.endpoints.join(" "))))
}

/// `member list -w fields`: the header, then each member's fields and a blank line.
fn member_fields(r: &rustcd_api::etcdserverpb::MemberListResponse) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    crate::print::fields_header(&mut out, &r.header);
    for m in &r.members {
        let _ = writeln!(out, "\"ID\" : {}", m.id);
        let _ = writeln!(out, "\"Name\" : {:?}", m.name);
        for u in &m.peer_ur_ls {
            let _ = writeln!(out, "\"PeerURL\" : {u:?}");
        }
        for u in &m.client_ur_ls {
            let _ = writeln!(out, "\"ClientURL\" : {u:?}");
        }
        let _ = writeln!(out, "\"IsLearner\" : {}\n", m.is_learner);
    }
    out
}
