//! `etcdctl`: etcd's command-line client on `rustcd-client`, printing what etcd's etcdctl prints.
//!
//! Owns the command line (flags, `ETCDCTL_*` variables), turning commands into requests and
//! responses into text (`print`, `json`). It must not know how servers work: everything it
//! learns comes through the etcd v3 API.

/// One unary call, `retried!(ctx, service.method(request))`, through [`Ctx::request`]: with a
/// fresh token, and again when the server says the token is stale, as clientv3 retries.
macro_rules! retried {
    ($ctx:expr, $svc:ident . $method:ident ( $req:expr )) => {{
        let req = $req;
        $ctx.request(|c| {
            let req = req.clone();
            async move { c.$svc().$method(req).await }
        })
        .await
    }};
}

mod admin;
mod auth;
mod check;
mod cli;
mod cluster;
mod connect;
mod help;
mod json;
mod kv;
mod lease;
mod mirror;
mod print;
mod session;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};
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

/// Now as zap's ISO 8601 with milliseconds, UTC (`2026-11-24T20:19:22.144Z`).
fn chrono_like_now() -> String {
    let micros = rustcd_process::logging::timestamp(std::time::SystemTime::now());
    format!("{}Z", micros.get(..23).unwrap_or(&micros))
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
        match e {
            // Failing to set up the client (authentication) is etcdctl's ExitBadConnection.
            rustcd_client::Error::Status(s) => CtlError { code: 2, ..s.into() },
            e => CtlError::new(1, &e.to_string()),
        }
    }
}

/// `--user name[:password]` and `--password`, as etcdctl reads them (a missing password is
/// read from stdin after a `Password: ` prompt).
fn credentials(user: &str, password: &str) -> Result<Option<(String, String)>, CtlError> {
    if user.is_empty() {
        if !password.is_empty() {
            return Err(CtlError::bad_args("username is empty"));
        }
        return Ok(None);
    }
    if !password.is_empty() {
        if user.contains(':') {
            return Err(CtlError::bad_args("--user option shouldn't include password when --password is set"));
        }
        return Ok(Some((user.to_string(), password.to_string())));
    }
    if let Some((name, pw)) = user.split_once(':') {
        return Ok(Some((name.to_string(), pw.to_string())));
    }
    eprint!("Password: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| CtlError::bad_args(&format!("failed to read password: {e}")))?;
    Ok(Some((user.to_string(), line.trim_end_matches(['\n', '\r']).to_string())))
}

/// What every command needs: how to reach the cluster and how to print.
pub struct Ctx {
    pub config: Config,
    pub command_timeout: Duration,
    pub format: Format,
    pub style: KvStyle,
    /// The connection [`Ctx::request`] reuses for every call of the command, until the server
    /// says its token is stale (one connection, one authentication per process, as clientv3).
    pub connection: std::sync::Mutex<Option<Client>>,
}

impl Ctx {
    pub async fn client(&self) -> Result<Client, CtlError> {
        Ok(self.connected(Client::connect(&self.config).await?))
    }

    /// Runs one request under `--command-timeout`.
    pub async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CtlError> {
        match tokio::time::timeout(self.command_timeout, f).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => {
                self.client_warning(&s);
                Err(s.into())
            }
            Err(_) => Err(CtlError::new(1, "context deadline exceeded")),
        }
    }

    /// Runs one request under `--command-timeout` on the command's connection (made on first
    /// use); when the server says the client's auth state is stale (`revision of auth store is
    /// old`, `invalid auth token`), it connects (authenticates) again and retries, as clientv3
    /// does.
    pub async fn request<T, Fut>(&self, f: impl Fn(Client) -> Fut) -> Result<T, CtlError>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.command_timeout;
        loop {
            let cached = self.connection.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let c = match cached {
                Some(c) => c,
                None => {
                    let c = self.client().await?;
                    *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
                    c
                }
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, f(c)).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) => {
                    self.client_warning(&s);
                    let stale = matches!(
                        s.message(),
                        "etcdserver: revision of auth store is old" | "etcdserver: invalid auth token"
                    );
                    if !stale || tokio::time::Instant::now() >= deadline {
                        return Err(s.into());
                    }
                    *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Err(_) => return Err(CtlError::new(1, "context deadline exceeded")),
            }
        }
    }

    /// A new connection, after the Go client's warning when credentials met a server whose
    /// authentication is off.
    fn connected(&self, c: Client) -> Client {
        if let Some(s) = &c.auth_not_enabled {
            self.client_warning(s);
        }
        c
    }

    /// The line etcd's Go client logs on stderr when a request fails (scripts and etcd's own
    /// tests look for "retrying of unary invoker failed").
    pub fn client_warning(&self, s: &tonic::Status) {
        let ts = chrono_like_now();
        let endpoint = self.config.endpoints.first().map_or("", String::as_str);
        let endpoint = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
        let target = format!("etcd-endpoints://0xc000{:06x}/{endpoint}", std::process::id() & 0xff_ffff);
        let error = format!("rpc error: code = {} desc = {}", go_code_name(s.code()), s.message());
        let line = json::Obj::new()
            .str("level", "warn")
            .str("ts", &ts)
            .str("logger", "etcd-client")
            .str("caller", "v3/retry_interceptor.go:62")
            .str("msg", "retrying of unary invoker failed")
            .str("target", &target)
            .raw("attempt", "0")
            .str("error", &error)
            .end();
        eprintln!("{line}");
    }

    /// Runs a read-only request on each endpoint in turn until one answers, within one
    /// `--command-timeout`: as clientv3 retries safe requests elsewhere when a member is
    /// unavailable (no leader, stopping, unreachable), so a minority member does not fail it.
    pub async fn read<T, Fut>(&self, f: impl Fn(Client) -> Fut) -> Result<T, CtlError>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.command_timeout;
        let mut last = CtlError::new(1, "context deadline exceeded");
        let eps = &self.config.endpoints;
        for (i, ep) in eps.iter().enumerate() {
            let c = match Client::connect_one(ep, &self.config).await {
                Ok(c) => self.connected(c),
                Err(rustcd_client::Error::Status(s)) => return Err(CtlError { code: 2, ..s.into() }),
                Err(_) => continue,
            };
            // Each endpoint gets its share of what is left, so a member that hangs (no leader
            // to confirm a read with) leaves time for the next one.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let share = left / u32::try_from(eps.len() - i).unwrap_or(1).max(1);
            match tokio::time::timeout(share, f(c)).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) if s.code() == tonic::Code::Unavailable => {
                    self.client_warning(&s);
                    last = s.into()
                }
                Ok(Err(s)) => {
                    self.client_warning(&s);
                    return Err(s.into());
                }
                Err(_) => last = CtlError::new(1, "context deadline exceeded"),
            }
        }
        Err(last)
    }
}

async fn run(cli: Cli) -> Result<(), CtlError> {
    let format = match Format::parse(&cli.write_out) {
        Some(f) => f,
        None => return Err(CtlError::bad_feature(&format!("unknown output format {:?}", cli.write_out))),
    };
    let endpoints = connect::endpoints_of(&cli)?;
    let tls = connect::client_tls(&cli, &endpoints)?;
    let duration = |s: &str| {
        rustcd_gocompat::parse_std_duration(s).map_err(|_| CtlError::bad_args(&format!("invalid duration {s:?}")))
    };
    let ctx = Ctx {
        config: Config {
            endpoints,
            // Go's dialer: a zero timeout is no timeout
            dial_timeout: Some(duration(&cli.dial_timeout)?)
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(3600)),
            credentials: credentials(&cli.user, &cli.password)?,
            tls,
        },
        command_timeout: duration(&cli.command_timeout)?,
        format,
        style: KvStyle { hex: cli.hex, value_only: false },
        connection: std::sync::Mutex::new(None),
    };
    match cli.command {
        Command::Version => {
            println!("etcdctl version: {}", rustcd_api::ETCD_VERSION);
            println!("API version: {}", rustcd_api::etcd_api_version());
        }
        Command::Get(a) => {
            let req = kv::range_request(&a)?;
            let streamed = kv::streamed(&a, &req);
            let resp = ctx
                .read(|c| {
                    let req = req.clone();
                    async move {
                        match streamed {
                            Some(fall_back) => c.range_streamed(req, fall_back).await,
                            None => c.kv().range(req).await,
                        }
                    }
                })
                .await?;
            let style = KvStyle { value_only: a.print_value_only, ..ctx.style };
            ctx.format.check_kv()?;
            print!("{}", print::get(ctx.format, &resp, style));
        }
        Command::Put(a) => {
            let req = kv::put_request(&a, &mut std::io::stdin().lock())?;
            let resp = retried!(ctx, kv.put(req))?;
            ctx.format.check_kv()?;
            print!("{}", print::put(ctx.format, &resp, ctx.style));
        }
        Command::Del(a) => {
            let req = kv::delete_request(&a)?;
            let resp = retried!(ctx, kv.delete_range(req))?;
            ctx.format.check_kv()?;
            print!("{}", print::del(ctx.format, &resp, ctx.style));
        }
        Command::Txn(a) => {
            let (compare, success, failure) = kv::read_txn(&mut std::io::stdin().lock(), a.interactive)?;
            let resp = retried!(ctx, kv.txn(TxnRequest { compare, success, failure }))?;
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
        Command::Endpoint(a) => cluster::endpoint(&ctx, a.cluster, a.cmd).await?,
        Command::Alarm(cmd) => admin::alarm(&ctx, cmd).await?,
        Command::Defrag(a) => admin::defrag(&ctx, a).await?,
        Command::Snapshot(cmd) => admin::snapshot(&ctx, cmd).await?,
        Command::Auth(cmd) => auth::auth(&ctx, cmd).await?,
        Command::User(cmd) => auth::user(&ctx, cmd).await?,
        Command::Role(cmd) => auth::role(&ctx, cmd).await?,
        Command::Lock(a) => session::lock(&ctx, a).await?,
        Command::Elect(a) => session::elect(&ctx, a).await?,
        Command::MoveLeader { args } => cluster::move_leader(&ctx, &args).await?,
        Command::Check(cmd) => check::run(&ctx, cmd).await?,
        Command::MakeMirror(a) => mirror::run(&ctx, a).await?,
        Command::Help { .. } => {}
        Command::Completion(cmd) => print!("{}", help::completion(&Cli::command(), cmd)),
    }
    Ok(())
}

/// The words of a command line that are not flags or flag values (global flags such as
/// `-w json` take the next word unless written `--flag=value`).
fn positional(args: &[String]) -> Vec<String> {
    let root = Cli::command();
    let takes_value = |flag: &str| {
        root.get_arguments().any(|a| {
            let named = a.get_long().is_some_and(|l| flag == format!("--{l}"))
                || a.get_short().is_some_and(|s| flag == format!("-{s}"));
            named
                && matches!(a.get_action(), clap::ArgAction::Set | clap::ArgAction::Append)
                && a.get_num_args().is_none_or(|n| n.min_values() > 0)
        })
    };
    let mut words = Vec::new();
    let mut skip_next = false;
    for a in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if a.starts_with('-') {
            skip_next = !a.contains('=') && takes_value(a);
        } else {
            words.push(a.clone());
        }
    }
    words
}

/// The command path a `--help`/`-h` (or `help ...`) asks about, when it does.
fn help_request(argv: &[String]) -> Option<Vec<String>> {
    let args: Vec<String> = argv.iter().skip(1).take_while(|a| *a != "--").cloned().collect();
    let words = positional(&args);
    let asks = args.iter().any(|a| a == "-h" || a == "--help");
    match words.first().map(String::as_str) {
        None if !asks => (args.is_empty() || words.is_empty()).then(Vec::new),
        Some("help") if asks => Some(vec!["help".to_string()]),
        Some("help") => Some(words[1..].to_vec()),
        _ => asks.then_some(words),
    }
}

/// etcdctl turns on cobra's prefix matching: a unique prefix names a command (`compact` is
/// `compaction`, `role grant` is `role grant-permission`).
fn prefix_matching(cmd: clap::Command) -> clap::Command {
    cmd.infer_subcommands(true).mut_subcommands(prefix_matching)
}

/// A command-line word as a `String`, keeping bytes that are not UTF-8: etcdctl (Go) takes
/// arguments as bytes, and etcd's own tests put keys such as `"\xff"`. Each such byte becomes
/// a private-use character that [`arg_bytes`] turns back into the byte.
fn arg_string(a: std::ffi::OsString) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in a.as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().filter_map(|b| char::from_u32(RAW_BYTE_BASE + u32::from(*b))));
    }
    out
}

/// Where [`arg_string`] puts a byte that is not UTF-8 (plane 16's private use area).
const RAW_BYTE_BASE: u32 = 0x10_FF00;

/// The bytes a command-line word stands for (see [`arg_string`]).
pub fn arg_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match u32::from(c).checked_sub(RAW_BYTE_BASE) {
            Some(b) if b < 0x100 => out.push(b as u8),
            _ => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// The long names of the on/off flags in the command tree: (switches, names that some command
/// declares otherwise, which are left to the parser).
fn switch_names(cmd: &clap::Command, out: &mut (Vec<String>, Vec<String>)) {
    for a in cmd.get_arguments() {
        if let Some(l) = a.get_long() {
            let list = if matches!(a.get_action(), clap::ArgAction::SetTrue) { &mut out.0 } else { &mut out.1 };
            list.push(l.to_string());
        }
    }
    for sub in cmd.get_subcommands() {
        switch_names(sub, out);
    }
}

/// etcdctl's flags are Go (pflag) flags: an on/off flag also takes `--flag=true` or
/// `--flag=false` (and Go's other spellings: 1, t, T, TRUE, True, 0, f, ...). Rewrites those
/// forms to what the parser takes: the bare flag, or nothing.
fn go_switches(argv: Vec<String>) -> Vec<String> {
    let mut found = (Vec::new(), Vec::new());
    switch_names(&Cli::command(), &mut found);
    let names: Vec<String> = found.0.into_iter().filter(|n| !found.1.contains(n)).collect();
    let mut out = Vec::with_capacity(argv.len());
    let mut rest = false;
    for a in argv {
        if a == "--" {
            rest = true;
        }
        let parsed = (!rest)
            .then(|| a.strip_prefix("--")?.split_once('='))
            .flatten()
            .filter(|(name, _)| names.iter().any(|n| n == name))
            .and_then(|(name, v)| rustcd_gocompat::flag_bool(Some(v)).ok().map(|on| on.then(|| format!("--{name}"))));
        match parsed {
            Some(Some(flag)) => out.push(flag),
            Some(None) => {}
            None => out.push(a),
        }
    }
    out
}

fn main() -> ExitCode {
    let argv = go_switches(std::env::args_os().map(arg_string).collect());
    if let Some(path) = help_request(&argv) {
        print!("{}", help::render(&Cli::command(), &path));
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::from_arg_matches(&prefix_matching(Cli::command()).get_matches_from(&argv)) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
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
