//! `etcd gateway start`: etcd's stateless L4 proxy. It accepts TCP connections on
//! `--listen-addr` and pipes each, bytes untouched, to one of `--endpoints` (taken in turn); an
//! endpoint that refuses a connection is skipped for `--retry-delay`. Clients see a member as if
//! they had dialled it.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The gateway's flags, with etcd's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayFlags {
    pub listen_addr: String,
    pub endpoints: Vec<String>,
    pub retry_delay: Duration,
    /// `--discovery-srv`: endpoints from the domain's `_etcd-client._tcp` SRV records instead.
    pub discovery_srv: String,
    pub discovery_srv_name: String,
    pub insecure_discovery: bool,
    /// `--trusted-ca-file`: the CA discovered endpoints are validated with.
    pub trusted_ca_file: String,
}

/// Reads `gateway [flags] start [flags]` (cobra takes flags before and after `start`).
pub fn parse(args: &[String]) -> Result<GatewayFlags, String> {
    let mut f = GatewayFlags {
        listen_addr: "127.0.0.1:23790".into(),
        endpoints: vec!["127.0.0.1:2379".into()],
        retry_delay: Duration::from_secs(60),
        discovery_srv: String::new(),
        discovery_srv_name: String::new(),
        insecure_discovery: false,
        trusted_ca_file: String::new(),
    };
    let mut started = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "start" {
            started = true;
            continue;
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(format!("unknown command {arg:?} for \"etcd gateway\""));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None if body == "insecure-discovery" => (body, "true".to_string()),
            None => {
                let v = args.get(i).ok_or_else(|| format!("flag needs an argument: --{body}"))?;
                i += 1;
                (body, v.clone())
            }
        };
        match name {
            "listen-addr" => f.listen_addr = value,
            "endpoints" => {
                f.endpoints = value.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect()
            }
            "retry-delay" => {
                f.retry_delay = rustcd_gocompat::parse_std_duration(&value)
                    .map_err(|_| format!("invalid argument {value:?} for \"--retry-delay\" flag"))?
            }
            "insecure-discovery" => {
                f.insecure_discovery = rustcd_gocompat::parse_bool(&value)
                    .map_err(|_| format!("invalid argument {value:?} for \"--insecure-discovery\" flag"))?
            }
            "discovery-srv" => f.discovery_srv = value,
            "discovery-srv-name" => f.discovery_srv_name = value,
            "trusted-ca-file" => f.trusted_ca_file = value,
            _ => return Err(format!("unknown flag: --{name}")),
        }
    }
    if !started {
        return Err("etcd gateway needs a subcommand: start".into());
    }
    strip_schemes(&mut f.endpoints);
    Ok(f)
}

/// etcd takes `host:port` or a URL; a TCP proxy needs `host:port`.
fn strip_schemes(endpoints: &mut [String]) {
    for e in endpoints {
        if let Some((_, rest)) = e.split_once("://") {
            *e = rest.trim_end_matches('/').to_string();
        }
    }
}

/// `--discovery-srv`: the endpoints of the domain's `_etcd-client._tcp` records replace
/// `--endpoints` (when it finds any). Without `--insecure-discovery` only the `https://` ones
/// that accept a connection are kept, as etcd's `ValidateSecureEndpoints` keeps them.
async fn discover(f: &mut GatewayFlags) -> Result<(), String> {
    let domain = f.discovery_srv.clone();
    let mut found = rustcd_client::srv::get_client("etcd-client", &domain, &f.discovery_srv_name)?;
    tracing::info!(srv_server = %domain, endpoints = ?found, "discovered cluster from SRV");
    if !f.insecure_discovery {
        if !f.trusted_ca_file.is_empty() {
            let info = rustcd_tls::TlsInfo { trusted_ca_file: f.trusted_ca_file.clone(), ..Default::default() };
            info.client_config().map_err(|e| e.to_string())?;
        }
        tracing::info!(srv_server = %domain, endpoints = ?found, "validating discovered SRV endpoints");
        let (mut valid, mut errs) = (Vec::new(), Vec::new());
        for ep in found {
            let Some(addr) = ep.strip_prefix("https://") else {
                errs.push(format!("{ep:?} is insecure"));
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr.trim_end_matches('/'))).await {
                Ok(Ok(_)) => valid.push(ep),
                Ok(Err(e)) => errs.push(format!("{ep:?} failed to dial ({e})")),
                Err(_) => errs.push(format!("{ep:?} failed to dial (i/o timeout)")),
            }
        }
        if errs.is_empty() {
            tracing::info!(srv_server = %domain, endpoints = ?valid, "using validated discovered SRV endpoints");
        } else {
            let error = errs.join(",");
            tracing::warn!(srv_server = %domain, endpoints = ?valid, error = %error, "failed to validate discovered endpoints");
        }
        found = valid;
    }
    if !found.is_empty() {
        f.endpoints = found;
        strip_schemes(&mut f.endpoints);
    }
    Ok(())
}

/// Runs the gateway until the process ends.
pub async fn run(mut f: GatewayFlags) -> Result<(), String> {
    if !f.discovery_srv.is_empty() {
        discover(&mut f).await?;
    }
    let listener =
        TcpListener::bind(&f.listen_addr).await.map_err(|e| format!("cannot listen on {}: {e}", f.listen_addr))?;
    tracing::info!(endpoints = ?f.endpoints, listen_addr = %f.listen_addr, "ready to proxy client requests");
    let failed: std::sync::Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        std::sync::Arc::new(std::sync::Mutex::new(vec![None; f.endpoints.len()]));
    let mut next = 0usize;
    loop {
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        next = next.wrapping_add(1);
        let (endpoints, failed, delay, start) = (f.endpoints.clone(), failed.clone(), f.retry_delay, next);
        tokio::spawn(async move {
            if let Some(mut upstream) = dial(&endpoints, &failed, delay, start).await {
                let mut client = client;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            } else {
                tracing::warn!("failed to find an available endpoint; closing the client connection");
            }
        });
    }
}

/// Connects to the first endpoint, from `start` on, that is not resting after a failure.
async fn dial(
    endpoints: &[String],
    failed: &std::sync::Mutex<Vec<Option<Instant>>>,
    delay: Duration,
    start: usize,
) -> Option<TcpStream> {
    for k in 0..endpoints.len() {
        let i = (start + k) % endpoints.len();
        let resting = failed.lock().ok().and_then(|f| f[i]).is_some_and(|at| at.elapsed() < delay);
        if resting {
            continue;
        }
        match TcpStream::connect(&endpoints[i]).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Err(e) => {
                tracing::warn!(endpoint = %endpoints[i], error = %e, "failed to connect to an endpoint; skipping it for the retry delay");
                if let Ok(mut f) = failed.lock() {
                    f[i] = Some(Instant::now());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_before_and_after_start() {
        let args: Vec<String> =
            ["--endpoints=http://localhost:20000,127.0.0.1:2", "start", "--listen-addr", "127.0.0.1:9"]
                .map(String::from)
                .into();
        let f = parse(&args).unwrap();
        assert_eq!(f.endpoints, ["localhost:20000", "127.0.0.1:2"]);
        assert_eq!(f.listen_addr, "127.0.0.1:9");
        assert!(parse(&["--endpoints=x".to_string()]).is_err(), "start is needed");
    }
}
