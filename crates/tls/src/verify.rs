//! Certificate checks beyond the chain: etcd's allowed common name and host name for client
//! and peer certificates, and the "no check" of a client that skips verification.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The subject common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// etcd's check of a peer's client certificate against the address it connected from: one of
/// its IP SANs is that address, or one of its DNS SANs resolves to it.
pub fn san_matches(der: &[u8], remote: std::net::IpAddr) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return false };
    let Ok(Some(san)) = cert.subject_alternative_name() else { return false };
    let mut names = Vec::new();
    for n in &san.value.general_names {
        match n {
            GeneralName::IPAddress(ip) => {
                let ip: Option<std::net::IpAddr> = match ip.len() {
                    4 => <[u8; 4]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                    16 => <[u8; 16]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                    _ => None,
                };
                if ip == Some(remote) {
                    return true;
                }
            }
            GeneralName::DNSName(d) => names.push(d.to_string()),
            _ => {}
        }
    }
    names.iter().any(|d| {
        std::net::ToSocketAddrs::to_socket_addrs(&(d.as_str(), 0)).is_ok_and(|mut a| a.any(|a| a.ip() == remote))
    })
}

/// Whether a certificate is valid for `host` (a DNS name or an IP address).
fn valid_for(der: &CertificateDer<'_>, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host) else { return false };
    webpki::EndEntityCert::try_from(der).is_ok_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
}

/// The chain check of rustls's WebPKI verifier, then etcd's: the certificate's common name
/// must be the allowed one, or it must be valid for the allowed host name. A certificate that
/// is itself one of the trusted CAs is trusted, as Go trusts it (WebPKI refuses a CA as an end
/// entity; etcd's own test fixtures use one so).
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    roots: Vec<CertificateDer<'static>>,
    allowed_cn: String,
    allowed_hostname: String,
}

impl ClientVerifier {
    pub fn new(
        inner: Arc<dyn ClientCertVerifier>,
        roots: Vec<CertificateDer<'static>>,
        allowed_cn: &str,
        allowed_hostname: &str,
    ) -> ClientVerifier {
        ClientVerifier {
            inner,
            roots,
            allowed_cn: allowed_cn.to_string(),
            allowed_hostname: allowed_hostname.to_string(),
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let ok = match self.inner.verify_client_cert(end_entity, intermediates, now) {
            Err(_) if self.roots.iter().any(|r| r == end_entity) => ClientCertVerified::assertion(),
            other => other?,
        };
        // Refused as a bad certificate, the alert Go's etcd sends for these.
        let refused = || Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        if !self.allowed_cn.is_empty() && common_name(end_entity).as_deref() != Some(self.allowed_cn.as_str()) {
            tracing::warn!(allowed_cn = %self.allowed_cn, "rejected a certificate: CommonName authentication failed");
            return Err(refused());
        }
        if !self.allowed_hostname.is_empty() && !valid_for(end_entity, &self.allowed_hostname) {
            tracing::warn!(allowed_hostname = %self.allowed_hostname, "rejected a certificate: client certificate authentication failed (HostName)");
            return Err(refused());
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client that takes any server certificate (Go's `InsecureSkipVerify`). The handshake's
/// signature is checked when ring knows its algorithm; one it does not (etcd 3.4's auto-TLS
/// certificates use P-521) is taken as it is, which costs nothing here: whoever answers could
/// have presented any certificate anyway. The connection is encrypted, not authenticated.
#[derive(Debug)]
pub struct NoServerVerification(pub Arc<CryptoProvider>);

/// Every scheme a server may sign with, known to ring or not.
const ANY_SCHEME: [SignatureScheme; 9] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP521_SHA512,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
];

impl NoServerVerification {
    fn known(&self, scheme: SignatureScheme) -> bool {
        self.0.signature_verification_algorithms.supported_schemes().contains(&scheme)
    }
}

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if !self.known(dss.scheme) {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if !self.known(dss.scheme) {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ANY_SCHEME.to_vec()
    }
}

/// The server check of rustls's WebPKI verifier, except that a server presenting one of the
/// trusted CAs itself, valid for the name dialled, is trusted (as Go trusts it).
#[derive(Debug)]
pub struct ServerVerifier {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub roots: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(e) => {
                let pinned = self.roots.iter().any(|r| r == end_entity)
                    && webpki::EndEntityCert::try_from(end_entity)
                        .is_ok_and(|c| c.verify_is_valid_for_subject_name(server_name).is_ok());
                if pinned { Ok(ServerCertVerified::assertion()) } else { Err(e) }
            }
            ok => ok,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
