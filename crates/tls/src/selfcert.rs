//! etcd's `--auto-tls`/`--peer-auto-tls` certificates (its `transport.SelfCert`): a
//! self-signed ECDSA P-256 certificate for the listen hosts, kept as `cert.pem`/`key.pem` in a
//! directory under the data dir and reused on the next start.

use std::path::Path;
use std::time::Duration;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};

use crate::{TlsError, TlsInfo};

/// The certificate and key in `dir` (made now if missing), valid for `hosts` (names or IP
/// addresses, a `:port` dropped) for `years` years, usable to serve and, with `client_auth`,
/// to present as a client (peers dial each other with it).
pub fn self_cert(dir: &Path, hosts: &[String], years: u32, client_auth: bool) -> Result<TlsInfo, TlsError> {
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    let info = TlsInfo {
        cert_file: cert_file.display().to_string(),
        key_file: key_file.display().to_string(),
        ..Default::default()
    };
    if cert_file.exists() && key_file.exists() {
        return Ok(info);
    }
    let err = |e: String| TlsError::Config(format!("cannot generate cert: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| TlsError::File(dir.display().to_string(), e.to_string()))?;
    let mut names: Vec<String> = Vec::new();
    for h in hosts {
        let host = match h.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.is_empty() => host,
            _ => h.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if !names.contains(&host) {
            names.push(host);
        }
    }
    let mut params = CertificateParams::new(names).map_err(|e| err(e.to_string()))?;
    // etcd's self certificates name an organisation and no common name.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "etcd");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + Duration::from_secs(u64::from(years.max(1)) * 365 * 24 * 3600);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if client_auth {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| err(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| err(e.to_string()))?;
    write_private(&key_file, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_file, cert.pem())
        .map_err(|e| TlsError::File(cert_file.display().to_string(), e.to_string()))?;
    tracing::info!(path = %cert_file.display(), "created cert file");
    Ok(info)
}

/// A file only its owner can read.
fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TlsError::File(path.display().to_string(), e.to_string()))?;
    f.write_all(data).map_err(|e| TlsError::File(path.display().to_string(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_pair_serves_tls_and_is_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let info = self_cert(dir.path(), &["localhost:2380".into(), "127.0.0.1".into()], 1, true).expect("cert");
        let first = std::fs::read(&info.cert_file).expect("cert file");
        assert!(info.server_config().is_ok(), "the pair loads as a server identity");
        let der = crate::certs(&info.cert_file).expect("pem");
        assert!(crate::common_name(&der[0]).is_none(), "etcd's self certs carry an organisation, no CN");
        let again = self_cert(dir.path(), &["other".into()], 1, true).expect("cert");
        assert_eq!(std::fs::read(&again.cert_file).expect("cert file"), first, "an existing pair is kept");
    }
}
