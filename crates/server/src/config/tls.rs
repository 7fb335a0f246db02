//! The member's TLS settings (etcd's `ClientTLSInfo` and `PeerTLSInfo`) from its flags, and
//! what start-up makes of them: the server configurations of the client and peer listeners
//! (with `--auto-tls`/`--peer-auto-tls` certificates made under the data dir), and the client
//! configurations the member dials peers and fellow members' client URLs with.

use std::path::Path;
use std::sync::Arc;

use rustcd_tls::connect::is_secure;
use rustcd_tls::{ClientConfig, ServerConfig, TlsInfo};

use super::parse::Values;
use crate::error::StartError;

/// Both sides' TLS flags.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`,
    /// `--client-crl-file`, `--client-cert-allowed-hostname`.
    pub client: TlsInfo,
    /// `--client-cert-file`/`--client-key-file`: what the member presents when it dials a
    /// fellow member's client URL (default: its server certificate).
    pub client_dial_cert: (String, String),
    pub auto_tls: bool,
    /// `--peer-*` as above, with `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname`.
    pub peer: TlsInfo,
    pub peer_dial_cert: (String, String),
    pub peer_auto_tls: bool,
    /// `--experimental-peer-skip-client-san-verification`.
    pub peer_skip_client_san: bool,
    /// Years the `--auto-tls` certificates are valid for.
    pub self_signed_cert_validity: u32,
}

fn first(v: &Values, name: &str) -> String {
    v.list(name).into_iter().next().unwrap_or_default()
}

impl TlsSettings {
    pub fn from_values(v: &Values) -> TlsSettings {
        let common = TlsInfo {
            cipher_suites: v.list("cipher-suites"),
            min_version: v.get("tls-min-version"),
            max_version: v.get("tls-max-version"),
            ..Default::default()
        };
        TlsSettings {
            client: TlsInfo {
                cert_file: v.get("cert-file"),
                key_file: v.get("key-file"),
                trusted_ca_file: v.get("trusted-ca-file"),
                client_cert_auth: v.bool("client-cert-auth"),
                crl_file: v.get("client-crl-file"),
                allowed_hostname: first(v, "client-cert-allowed-hostname"),
                ..common.clone()
            },
            client_dial_cert: (v.get("client-cert-file"), v.get("client-key-file")),
            auto_tls: v.bool("auto-tls"),
            peer: TlsInfo {
                cert_file: v.get("peer-cert-file"),
                key_file: v.get("peer-key-file"),
                trusted_ca_file: v.get("peer-trusted-ca-file"),
                client_cert_auth: v.bool("peer-client-cert-auth"),
                crl_file: v.get("peer-crl-file"),
                allowed_cn: first(v, "peer-cert-allowed-cn"),
                allowed_hostname: first(v, "peer-cert-allowed-hostname"),
                ..common
            },
            peer_dial_cert: (v.get("peer-client-cert-file"), v.get("peer-client-key-file")),
            peer_auto_tls: v.bool("peer-auto-tls"),
            peer_skip_client_san: v.bool("experimental-peer-skip-client-san-verification"),
            self_signed_cert_validity: u32::try_from(v.uint("self-signed-cert-validity")).unwrap_or(1),
        }
    }
}

/// The TLS a member serves and dials with, made at start-up.
#[derive(Clone, Default)]
pub struct MemberTls {
    /// The client listeners' server side (for `https://`/`unixs://` client URLs).
    pub client_server: Option<Arc<ServerConfig>>,
    pub peer_server: Option<Arc<ServerConfig>>,
    /// How the member dials its peers' `https://` URLs.
    pub peer_dial: Option<Arc<ClientConfig>>,
    /// How it dials fellow members' `https://` client URLs (lease forwarding, hash checks).
    pub client_dial: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for MemberTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberTls")
            .field("client_server", &self.client_server.is_some())
            .field("peer_server", &self.peer_server.is_some())
            .finish()
    }
}

fn tls_err(e: rustcd_tls::TlsError) -> StartError {
    StartError::Config(e.to_string())
}

fn host_of(u: &str) -> String {
    let rest = u.split_once("://").map_or(u, |(_, r)| r);
    rest.trim_end_matches('/').to_string()
}

/// One side (client or peer): its server configuration when any of `urls` is secure, with the
/// auto-TLS certificate made under `dir` when no certificate was given.
fn side(
    info: &TlsInfo,
    auto: bool,
    urls: &[String],
    dir: &Path,
    years: u32,
    flags: &str,
    what: &str,
) -> Result<(TlsInfo, Option<Arc<ServerConfig>>), StartError> {
    let mut info = info.clone();
    if info.cert_file.is_empty() && info.key_file.is_empty() && auto {
        let hosts: Vec<String> = urls.iter().map(|u| host_of(u)).collect();
        let made = rustcd_tls::self_cert(dir, &hosts, years, true).map_err(tls_err)?;
        (info.cert_file, info.key_file) = (made.cert_file, made.key_file);
        // Peers made their certificates themselves: nothing to check them against.
        info.insecure_skip_verify = true;
    }
    let Some(secure) = urls.iter().find(|u| is_secure(u)) else {
        if !info.cert_file.is_empty() {
            tracing::warn!("scheme is HTTP while key and cert files are present; ignoring key and cert files ({what})");
        }
        return Ok((info, None));
    };
    if info.cert_file.is_empty() || info.key_file.is_empty() {
        return Err(StartError::Config(format!(
            "TLS key/cert ({flags}) must be provided for {what} url {secure} with HTTPS scheme"
        )));
    }
    let server = info.server_config().map_err(tls_err)?;
    Ok((info, Some(server)))
}

/// What a member dials with: its own certificate (when it has one) and the trusted CA, or no
/// check of the other side's certificate when there is no CA (self-made certificates).
fn dialer(info: &TlsInfo, cert: &(String, String)) -> Option<Arc<ClientConfig>> {
    let mut d = info.clone();
    if !cert.0.is_empty() {
        (d.cert_file, d.key_file) = cert.clone();
    }
    if d.trusted_ca_file.is_empty() {
        d.insecure_skip_verify = true;
    }
    match d.client_config() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "cannot make a TLS client configuration; secure URLs of other members cannot be dialled");
            None
        }
    }
}

/// Builds the member's TLS at start-up.
pub fn member_tls(
    s: &TlsSettings,
    data_dir: &Path,
    client_urls: &[String],
    peer_urls: &[String],
) -> Result<MemberTls, StartError> {
    let years = s.self_signed_cert_validity;
    let fixtures = data_dir.join("fixtures");
    let (client, client_server) =
        side(&s.client, s.auto_tls, client_urls, &fixtures.join("client"), years, "--cert-file, --key-file", "client")?;
    let (peer, peer_server) = side(
        &s.peer,
        s.peer_auto_tls,
        peer_urls,
        &fixtures.join("peer"),
        years,
        "--peer-cert-file, --peer-key-file",
        "peer",
    )?;
    Ok(MemberTls {
        client_server,
        peer_server,
        peer_dial: dialer(&peer, &s.peer_dial_cert),
        client_dial: dialer(&client, &s.client_dial_cert),
    })
}
