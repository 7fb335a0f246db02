//! rustcd-tls: TLS as etcd configures it (its `transport.TLSInfo`), on rustls. A [`TlsInfo`]
//! holds what etcd's flags say (certificate, key, trusted CA, client-certificate auth, CRL,
//! allowed CN and hostname, cipher suites, versions, skip-verify) and turns into a rustls
//! server or client configuration. The server's certificate is read again from its files when
//! they change (etcd reads them on each handshake); [`self_cert`] makes etcd's `--auto-tls`
//! certificates; [`connect::Connector`] dials `http://`, `https://` and `unix://` endpoints for
//! tonic.
//!
//! Owns: certificates, keys, handshakes. Must not touch: what flows over the connection.

pub mod connect;
mod names;
mod selfcert;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

pub use connect::describe;
pub use rustls::{ClientConfig, ServerConfig};
pub use selfcert::self_cert;
pub use verify::{common_name, san_matches};

/// Where Debian (and most Linux systems) keep the system's trusted CAs, which a TLS client
/// trusts when it is given no CA file, as Go's does.
pub const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The subject public key (the bits of its SubjectPublicKeyInfo: PKCS#1 for RSA, the point for
/// ECDSA) of the first certificate of a PEM file's contents.
pub fn certificate_public_key(pem: &[u8]) -> Option<Vec<u8>> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

/// The common name of the first certificate of a PEM file's contents.
pub fn first_cert_common_name(pem: &[u8]) -> Option<String> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    common_name(&der)
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("open {0}: {1}")]
    File(String, String),
    #[error("{0}")]
    Config(String),
}

/// etcd's `TLSInfo`: one side's TLS settings, as its flags give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    /// The server asks for and checks a client certificate.
    pub client_cert_auth: bool,
    pub crl_file: String,
    /// A client's (or peer's) certificate must have this common name.
    pub allowed_cn: String,
    /// A client's (or peer's) certificate must be valid for this host name.
    pub allowed_hostname: String,
    /// The client does not check the server's certificate (etcdctl's
    /// `--insecure-skip-tls-verify`, and peers with `--peer-auto-tls`).
    pub insecure_skip_verify: bool,
    /// Go's cipher suite names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`); empty: rustls's.
    pub cipher_suites: Vec<String>,
    /// `TLS1.2`, `TLS1.3` or empty.
    pub min_version: String,
    pub max_version: String,
}

impl TlsInfo {
    /// No TLS asked for.
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_empty() && self.key_file.is_empty() && self.trusted_ca_file.is_empty()
    }

    fn provider(&self) -> Result<Arc<CryptoProvider>, TlsError> {
        let mut p = rustls::crypto::ring::default_provider();
        if !self.cipher_suites.is_empty() {
            p.cipher_suites = names::cipher_suites(&self.cipher_suites)?;
        }
        Ok(Arc::new(p))
    }

    fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
        names::versions(&self.min_version, &self.max_version, !self.cipher_suites.is_empty())
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in certs(&self.trusted_ca_file)? {
            roots.add(c).map_err(|e| TlsError::Config(format!("{}: {e}", self.trusted_ca_file)))?;
        }
        Ok(roots)
    }

    /// The server side: its certificate (read again when the files change), and, with
    /// client-certificate auth, the check of the client's against the trusted CA, the CRL and
    /// the allowed CN or host name. ALPN offers HTTP/2 and HTTP/1.1 (gRPC and the HTTP API on
    /// one port).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        if self.cert_file.is_empty() || self.key_file.is_empty() {
            return Err(TlsError::Config("TLS needs both a certificate and a key file".into()));
        }
        let provider = self.provider()?;
        let resolver = Arc::new(Reloading::new(&self.cert_file, &self.key_file, provider.clone())?);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions()?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.client_cert_auth {
            let crls = if self.crl_file.is_empty() { Vec::new() } else { crls(&self.crl_file)? };
            let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider)
                .with_crls(crls)
                // etcd refuses what a CRL lists; a certificate no CRL speaks of is not refused.
                .allow_unknown_revocation_status()
                .build()
                .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
            let roots = certs(&self.trusted_ca_file)?;
            let v = verify::ClientVerifier::new(inner, roots, &self.allowed_cn, &self.allowed_hostname);
            builder.with_client_cert_verifier(Arc::new(v))
        } else {
            builder.with_no_client_auth()
        };
        let mut cfg = builder.with_cert_resolver(resolver);
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The client side: the server checked against the trusted CA (or not at all with
    /// skip-verify), this side's certificate presented when it has one; ALPN asks for HTTP/2.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = self.provider()?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions()?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.insecure_skip_verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verify::NoServerVerification(provider)))
        } else if self.trusted_ca_file.is_empty() {
            return Err(TlsError::Config(
                "a TLS client needs a trusted CA file (or skipping verification) to check servers".into(),
            ));
        } else {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), provider)
                .build()
                .map_err(|e| TlsError::Config(format!("server certificate verifier: {e}")))?;
            let v = verify::ServerVerifier { inner, roots: certs(&self.trusted_ca_file)? };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(v))
        };
        let mut cfg = if self.cert_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            builder
                .with_client_auth_cert(certs(&self.cert_file)?, key(&self.key_file)?)
                .map_err(|e| TlsError::Config(format!("{}: {e}", self.cert_file)))?
        };
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }
}

fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File(path.to_string(), go_io_error(&e)))
}

/// An I/O error in Go's words (`open x: no such file or directory`), as etcd prints them.
pub fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Every certificate of a PEM file.
pub fn certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let out: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Config(format!("{path}: {e}")))?;
    if out.is_empty() {
        return Err(TlsError::Config(format!("{path}: no certificate found")));
    }
    Ok(out)
}

fn key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| TlsError::Config(format!("{path}: {e}")))
}

/// The CRLs of a file, PEM or DER (Go's `x509.ParseCRL` takes both).
fn crls(path: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let data = read(path)?;
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Config(format!("{path}: {e}")))?;
    if pem.is_empty() && data.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(data)]);
    }
    Ok(pem)
}

/// The server's certificate, read again when either file's modification time changes.
#[derive(Debug)]
struct Reloading {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Reloading {
    fn new(cert_file: &str, key_file: &str, provider: Arc<CryptoProvider>) -> Result<Reloading, TlsError> {
        let (cert_file, key_file) = (PathBuf::from(cert_file), PathBuf::from(key_file));
        let stamps = (modified(&cert_file), modified(&key_file));
        let ck = Self::load(&cert_file, &key_file, &provider)?;
        Ok(Reloading { cert_file, key_file, provider, current: Mutex::new((stamps.0, stamps.1, ck)) })
    }

    fn load(cert: &Path, key_file: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = certs(&cert.display().to_string())?;
        let key = key(&key_file.display().to_string())?;
        let ck = CertifiedKey::from_der(chain, key, provider)
            .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?;
        Ok(Arc::new(ck))
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let stamps = (modified(&self.cert_file), modified(&self.key_file));
        if (stamps.0, stamps.1) != (cur.0, cur.1) {
            match Self::load(&self.cert_file, &self.key_file, &self.provider) {
                Ok(ck) => *cur = (stamps.0, stamps.1, ck),
                // A half-written pair: keep serving the last good one.
                Err(e) => tracing::warn!(error = %e, "cannot reload the TLS certificate; keeping the last one"),
            }
        }
        Some(cur.2.clone())
    }
}
