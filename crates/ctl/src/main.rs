//! `etcdctl`: etcd's command-line client on `rustcd-client`, printing what etcd's etcdctl prints.
//!
//! Owns the command line (flags, `ETCDCTL_*` variables), turning commands into requests and
//! responses into text (`print`, `json`). It must not know how servers work: everything it
//! learns comes through the etcd v3 API.

mod admin;
mod auth;
mod cluster;
mod json;
mod kv;
mod lease;
mod print;
mod session;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rustcd_api::etcdserverpb::{CompactionRequest, TxnRequest};
use rustcd_client::{Client, Config};

use print::{Format, KvStyle};

/// A failed command: etcdctl's exit code and the text after `Error: `.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct CtlError {
    pub code: u8,
    pub msg: String,
}

impl CtlError {
    pub fn new(code: u8, msg: &str) -> CtlError {
        CtlError { code, msg: msg.to_string() }
    }
    /// etcdctl's `ExitBadArgs`.
    pub fn bad_args(msg: &str) -> CtlError {
        CtlError::new(128, msg)
    }
    /// etcdctl's `ExitBadFeature`.
    pub fn bad_feature(msg: &str) -> CtlError {
        CtlError::new(4, msg)
    }
    /// A failure already reported on stderr: only the exit code is left to give.
    pub fn silent(self) -> CtlError {
        CtlError { msg: String::new(), ..self }
    }
}

impl From<tonic::Status> for CtlError {
    /// etcd's own errors (all `etcdserver: ...`) print as their text, as clientv3 turns them back
    /// into typed errors; any other status prints as Go's gRPC `rpc error: ...`.
    fn from(s: tonic::Status) -> CtlError {
        let msg = match s.code() {
            _ if s.message().starts_with("etcdserver: ") => s.message().to_string(),
            tonic::Code::DeadlineExceeded | tonic::Code::Unavailable => "context deadline exceeded".to_string(),
            code => format!("rpc error: code = {} desc = {}", go_code_name(code), s.message()),
        };
        CtlError::new(1, &msg)
    }
}

/// grpc-go's name for a status code.
fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

impl From<rustcd_client::Error> for CtlError {
    fn from(e: rustcd_client::Error) -> CtlError {
        CtlError::new(1, &e.to_string())
    }
}

/// A simple command line client for etcd3.
#[derive(Parser, Debug)]
#[command(name = "etcdctl", disable_version_flag = true)]
struct Cli {
    /// gRPC endpoints
    #[arg(long, global = true, env = "ETCDCTL_ENDPOINTS", default_value = "127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(short = 'w', long = "write-out", global = true, env = "ETCDCTL_WRITE_OUT", default_value = "simple")]
    write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX")]
    hex: bool,
    /// dial timeout for client connections
    #[arg(long = "dial-timeout", global = true, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s")]
    dial_timeout: String,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long = "command-timeout", global = true, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s")]
    command_timeout: String,
    /// keepalive time for client connections
    #[arg(long = "keepalive-time", global = true, default_value = "2s")]
    keepalive_time: String,
    /// keepalive timeout for client connections
    #[arg(long = "keepalive-timeout", global = true, default_value = "6s")]
    keepalive_timeout: String,
    /// enable client-side debug logging
    #[arg(long, global = true)]
    debug: bool,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER")]
    user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD")]
    password: Option<String>,
    /// disable transport security for client connections
    #[arg(long = "insecure-transport", global = true, default_value_t = true)]
    insecure_transport: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Gets the key or a range of keys
    Get(kv::GetArgs),
    /// Puts the given key into the store
    Put(kv::PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(kv::DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(kv::TxnArgs),
    /// Compacts the event history in etcd
    Compaction(kv::CompactionArgs),
    /// Watches events stream on keys or prefixes
    Watch(watch::WatchArgs),
    /// Lease related commands
    #[command(subcommand)]
    Lease(lease::LeaseCmd),
    /// Membership related commands
    #[command(subcommand)]
    Member(cluster::MemberCmd),
    /// Endpoint related commands
    #[command(subcommand)]
    Endpoint(cluster::EndpointCmd),
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(admin::AlarmCmd),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag,
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(admin::SnapshotCmd),
    /// Enable or disable authentication
    #[command(subcommand)]
    Auth(auth::AuthCmd),
    /// User related commands
    #[command(subcommand)]
    User(auth::UserCmd),
    /// Role related commands
    #[command(subcommand)]
    Role(auth::RoleCmd),
    /// Acquires a named lock
    Lock(session::LockArgs),
    /// Observes and participates in leader election
    Elect(session::ElectArgs),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader { target: String },
    /// Prints the version of etcdctl
    Version,
}

/// Go's `time.ParseDuration` for the forms etcdctl's flags take (`2s`, `500ms`, `1m30s`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Some(Duration::from_secs_f64(total))
}

/// What every command needs: how to reach the cluster and how to print.
pub struct Ctx {
    pub config: Config,
    pub command_timeout: Duration,
    pub format: Format,
    pub style: KvStyle,
}

impl Ctx {
    pub async fn client(&self) -> Result<Client, CtlError> {
        Ok(Client::connect(&self.config).await?)
    }

    /// Runs one request under `--command-timeout`.
    pub async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CtlError> {
        match tokio::time::timeout(self.command_timeout, f).await {
            Ok(r) => Ok(r?.into_inner()),
            Err(_) => Err(CtlError::new(1, "context deadline exceeded")),
        }
    }
}

async fn run(cli: Cli) -> Result<(), CtlError> {
    let format = match Format::parse(&cli.write_out) {
        Some(f) => f,
        None => return Err(CtlError::bad_feature(&format!("unknown output format {:?}", cli.write_out))),
    };
    let duration = |s: &str| parse_duration(s).ok_or_else(|| CtlError::bad_args(&format!("invalid duration {s:?}")));
    let ctx = Ctx {
        config: Config { endpoints: cli.endpoints.clone(), dial_timeout: duration(&cli.dial_timeout)? },
        command_timeout: duration(&cli.command_timeout)?,
        format,
        style: KvStyle { hex: cli.hex, value_only: false },
    };
    match cli.command {
        Command::Version => {
            println!("etcdctl version: {}", rustcd_api::ETCD_VERSION);
            println!("API version: {}", api_version());
        }
        Command::Get(a) => {
            let req = kv::range_request(&a)?;
            let c = ctx.client().await?;
            let resp = ctx.call(c.kv().range(req)).await?;
            let style = KvStyle { value_only: a.print_value_only, ..ctx.style };
            ctx.format.check_kv()?;
            print!("{}", print::get(ctx.format, &resp, style));
        }
        Command::Put(a) => {
            let req = kv::put_request(&a, &mut std::io::stdin().lock())?;
            let c = ctx.client().await?;
            let resp = ctx.call(c.kv().put(req)).await?;
            ctx.format.check_kv()?;
            print!("{}", print::put(ctx.format, &resp, ctx.style));
        }
        Command::Del(a) => {
            let req = kv::delete_request(&a)?;
            let c = ctx.client().await?;
            let resp = ctx.call(c.kv().delete_range(req)).await?;
            ctx.format.check_kv()?;
            print!("{}", print::del(ctx.format, &resp, ctx.style));
        }
        Command::Txn(a) => {
            let (compare, success, failure) = kv::read_txn(&mut std::io::stdin().lock(), a.interactive)?;
            let c = ctx.client().await?;
            let resp = ctx.call(c.kv().txn(TxnRequest { compare, success, failure })).await?;
            ctx.format.check_kv()?;
            print!("{}", print::txn(ctx.format, &resp, ctx.style));
        }
        Command::Compaction(a) => {
            let revision = kv::compaction_revision(&a)?;
            let c = ctx.client().await?;
            ctx.call(c.kv().compact(CompactionRequest { revision, physical: a.physical })).await?;
            println!("compacted revision {revision}");
        }
        Command::Watch(a) => watch::run(&ctx, a).await?,
        Command::Lease(cmd) => lease::run(&ctx, cmd).await?,
        Command::Member(cmd) => cluster::member(&ctx, cmd).await?,
        Command::Endpoint(cmd) => cluster::endpoint(&ctx, cmd).await?,
        Command::Alarm(cmd) => admin::alarm(&ctx, cmd).await?,
        Command::Defrag => admin::defrag(&ctx).await?,
        Command::Snapshot(cmd) => admin::snapshot(&ctx, cmd).await?,
        Command::Auth(cmd) => auth::auth(&ctx, cmd).await?,
        Command::User(cmd) => auth::user(&ctx, cmd).await?,
        Command::Role(cmd) => auth::role(&ctx, cmd).await?,
        Command::Lock(a) => session::lock(&ctx, a).await?,
        Command::Elect(a) => session::elect(&ctx, a).await?,
        Command::MoveLeader { target } => cluster::move_leader(&ctx, &target).await?,
    }
    Ok(())
}

/// `3.5` for `3.5.0`.
fn api_version() -> String {
    rustcd_api::ETCD_VERSION.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.msg.is_empty() {
                eprintln!("Error: {}", e.msg);
            }
            ExitCode::from(e.code)
        }
    }
}
