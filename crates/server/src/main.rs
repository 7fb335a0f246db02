//! `etcd`: the rustcd server binary, with etcd's flags.

use rustcd_server::config::Config;
use rustcd_server::config::parse::{self, Command, ParseError};
use rustcd_server::etcdserver::apply::ApplyEnd;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("gateway") => gateway(&args[1..]),
        Some("grpc-proxy") => grpc_proxy(&args[1..]),
        _ => {}
    }
    let env: Vec<(String, String)> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let values = match parse::parse(&args, &env) {
        Ok(Command::Run(v)) => v,
        Ok(Command::Help) => {
            eprint!("{}", parse::USAGE);
            println!("{}", parse::help());
            return;
        }
        Ok(Command::Version) => {
            println!("etcd Version: {}", rustcd_api::ETCD_VERSION);
            println!("rustcd Version: {}", rustcd_api::RUSTCD_VERSION);
            println!(
                "Go OS/Arch: {}/{}",
                std::env::consts::OS,
                if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }
            );
            return;
        }
        Err(ParseError::Usage(e)) => {
            eprintln!("{e}");
            eprint!("{}", parse::USAGE);
            std::process::exit(2);
        }
        Err(ParseError::Invalid(e)) => {
            eprintln!("etcd: error verifying flags, {e}. See 'etcd --help'.");
            std::process::exit(1);
        }
    };
    let cfg = match Config::from_values(values) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("etcd: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rustcd_process::logging::init(&cfg.raw.log_level, &cfg.raw.log_outputs, cfg.log_rotation.as_ref()) {
        eprintln!("etcd: {e}");
        std::process::exit(1);
    }
    parse::log_notes(&cfg.notes);
    abort_on_panic();
    if cfg.raw.proxy != "off" {
        run_mode(rustcd_server::proxy::v2proxy::run(cfg));
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etcd: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run_member(cfg));
    // Dropping the tasks drops the last handles on the backend, which closes it cleanly: redb
    // repairs (walks) the whole file on the next open after an unclean close.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    std::process::exit(code);
}

/// Runs a member until a signal (a graceful stop) or until it ends by itself; the exit code.
async fn run_member(cfg: Config) -> i32 {
    let running = match rustcd_server::start(cfg.clone()).await {
        Ok(r) => r,
        Err(rustcd_server::error::StartError::FallBackToProxy) => {
            // Nothing of a member stays behind: the next start asks the discovery URL again.
            let _ = std::fs::remove_dir_all(rustcd_schema::datadir::member_dir(&cfg.data_dir));
            return match rustcd_server::proxy::v2proxy::run(cfg).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("etcd: {e}");
                    1
                }
            };
        }
        Err(e) => {
            tracing::error!(error = %e, "failed to start");
            eprintln!("etcd: {e}");
            return 1;
        }
    };
    // The member runs until a signal, or until it ends by itself.
    let end = tokio::select! {
        _ = rustcd_server::wait_for_signal() => None,
        end = running.ended() => Some(end),
    };
    match end {
        // Removed from the cluster: its last words are logged; it is done.
        Some(ApplyEnd::Removed) => return 0,
        Some(ApplyEnd::Fatal(e)) => {
            tracing::error!(error = %e, "the member stops");
            eprintln!("etcd: {e}");
            return 1;
        }
        Some(ApplyEnd::Stopped) | None => {}
    }
    tracing::info!("received signal; shutting down");
    let c = running.server.config();
    let (name, dir) = (c.raw.name.clone(), c.data_dir.display().to_string());
    let (peers, clients) = (c.advertise_peer_urls.join(","), c.advertise_client_urls.join(","));
    tracing::info!(name = %name, data_dir = %dir, advertise_peer_urls = %peers, advertise_client_urls = %clients, "closing etcd server");
    running.stop().await;
    tracing::info!(name = %name, data_dir = %dir, advertise_peer_urls = %peers, advertise_client_urls = %clients, "closed etcd server");
    0
}

/// A panic on any thread ends the member at once, as it does etcd: a raft or apply thread
/// gone would leave a member that answers but never commits. It restarts from its disk.
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if rustcd_raft::log_store::recovering() {
            return; // caught: a damaged raft log becomes an error (see `LogStore::open`)
        }
        tracing::error!(panic = %info, "panic; the member stops");
        default(info);
        std::process::abort();
    }));
}

/// `etcd gateway start`: the L4 proxy (see `rustcd_server::proxy::gateway`).
fn gateway(args: &[std::ffi::OsString]) -> ! {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let flags = match rustcd_server::proxy::gateway::parse(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rustcd_process::logging::init("info", &[], None) {
        eprintln!("etcd: {e}");
        std::process::exit(1);
    }
    run_mode(rustcd_server::proxy::gateway::run(flags))
}

/// `etcd grpc-proxy start`: the L7 proxy (see `rustcd_grpcproxy`).
fn grpc_proxy(args: &[std::ffi::OsString]) -> ! {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let flags = match rustcd_grpcproxy::parse(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rustcd_process::logging::init(if flags.debug { "debug" } else { "info" }, &[], None) {
        eprintln!("etcd: {e}");
        std::process::exit(1);
    }
    for note in &flags.notes {
        tracing::warn!("{note}");
    }
    run_mode(serve_grpc_proxy(flags))
}

/// Runs one of the binary's other modes (gateway, grpc-proxy) to its end, then exits: 0, or 1
/// with its error on one line.
fn run_mode(mode: impl std::future::Future<Output = Result<(), String>>) -> ! {
    let code = match tokio::runtime::Runtime::new() {
        Ok(rt) => match rt.block_on(mode) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("etcd: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("etcd: cannot start runtime: {e}");
            1
        }
    };
    std::process::exit(code)
}

async fn serve_grpc_proxy(f: rustcd_grpcproxy::Flags) -> Result<(), String> {
    use rustcd_server::config::url::Url;
    use rustcd_server::embed::listen::{ServeOpts, serve_on};
    let tls = rustcd_grpcproxy::listen_tls(&f)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listen = |addr: &str| {
        let url = if addr.contains("://") { addr.to_string() } else { format!("{scheme}://{addr}") };
        Url::parse(&url)
    };
    let opts = ServeOpts {
        max_concurrent_streams: f.max_concurrent_streams,
        keepalive_interval: f.grpc_keepalive_interval,
        keepalive_timeout: f.grpc_keepalive_timeout,
        reuse_port: false,
        tls,
        check_client_san: false,
        shutdown: Default::default(),
    };
    let router = rustcd_grpcproxy::start(&f)?;
    if !f.metrics_addr.is_empty() {
        let url = listen(&f.metrics_addr)?;
        serve_on(&[url], router.clone(), "gRPC proxy listening for metrics", &opts).await.map_err(|e| e.to_string())?;
    }
    let url = listen(&f.listen_addr)?;
    serve_on(&[url], router, "listening for gRPC proxy client requests", &opts).await.map_err(|e| e.to_string())?;
    tracing::info!(address = %f.listen_addr, "started gRPC proxy");
    rustcd_server::wait_for_signal().await;
    tracing::info!(address = %f.listen_addr, "stop listening gRPC proxy client requests");
    Ok(())
}
