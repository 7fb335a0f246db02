//! How etcdctl reaches a cluster: its endpoints (from `--endpoints` or DNS discovery) and the
//! TLS its flags ask for.

use std::sync::Arc;

use crate::CtlError;
use crate::cli::Cli;

/// `--endpoints`, or what `--discovery-srv` finds in the domain's `_etcd-client._tcp` SRV
/// records (without `--insecure-discovery`, only the https ones, as etcdctl).
pub fn endpoints_of(cli: &Cli) -> Result<Vec<String>, CtlError> {
    if cli.discovery_srv.is_empty() {
        return Ok(cli.endpoints.clone());
    }
    let found = rustcd_client::srv::get_client("etcd-client", &cli.discovery_srv, &cli.discovery_srv_name)
        .map_err(|e| CtlError::new(1, &e))?;
    let kept: Vec<String> = found
        .into_iter()
        .filter(|ep| {
            let insecure = !cli.insecure_discovery && ep.starts_with("http://");
            if insecure {
                eprintln!("ignoring discovered insecure endpoint {ep:?}");
            }
            !insecure
        })
        .collect();
    Ok(if kept.is_empty() { cli.endpoints.clone() } else { kept })
}

/// etcdctl's TLS: with `--cacert`, `--cert` or `--key`, with `--insecure-transport=false`, for
/// an `https://` endpoint, or for secure DNS discovery; checked against `--cacert` (the
/// system's CAs without one), or not at all with `--insecure-skip-tls-verify`.
pub fn client_tls(cli: &Cli, endpoints: &[String]) -> Result<Option<Arc<rustcd_tls::ClientConfig>>, CtlError> {
    let flags = TlsFlags {
        cacert: &cli.cacert,
        cert: &cli.cert,
        key: &cli.key,
        skip_verify: cli.insecure_skip_tls_verify,
        insecure_transport: cli.insecure_transport,
    };
    tls_config(&flags, endpoints, !cli.discovery_srv.is_empty() && !cli.insecure_discovery)
}

/// One client's TLS flags (the global ones, or make-mirror's `--dest-*`).
pub struct TlsFlags<'a> {
    pub cacert: &'a str,
    pub cert: &'a str,
    pub key: &'a str,
    pub skip_verify: bool,
    pub insecure_transport: bool,
}

/// The TLS configuration `flags` ask for to reach `endpoints`, if any.
pub fn tls_config(
    flags: &TlsFlags,
    endpoints: &[String],
    secure_discovery: bool,
) -> Result<Option<Arc<rustcd_tls::ClientConfig>>, CtlError> {
    let secure_url = endpoints.iter().any(|e| rustcd_tls::connect::is_secure(e));
    let asked = !flags.cacert.is_empty() || !flags.cert.is_empty() || !flags.key.is_empty();
    if !(asked || secure_url || secure_discovery || !flags.insecure_transport) {
        return Ok(None);
    }
    let ca = if flags.cacert.is_empty() && !flags.skip_verify { rustcd_tls::SYSTEM_CAS } else { flags.cacert };
    let info = rustcd_tls::TlsInfo {
        cert_file: flags.cert.to_string(),
        key_file: flags.key.to_string(),
        trusted_ca_file: ca.to_string(),
        insecure_skip_verify: flags.skip_verify,
        ..Default::default()
    };
    info.client_config().map(Some).map_err(|e| CtlError::bad_args(&e.to_string()))
}
