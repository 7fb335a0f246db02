//! etcd's names for cipher suites and TLS versions (Go's), and the rustls ones they mean.

use rustls::crypto::ring::cipher_suite as cs;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use crate::TlsError;

/// Go's names of the TLS 1.2 suites rustls has (the legacy `_SHA256`-less ChaCha names too).
const SUITES: [(&str, SupportedCipherSuite); 8] = [
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
];

/// The TLS 1.3 suites (Go does not let them be chosen) and the named TLS 1.2 ones.
pub fn cipher_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let mut out: Vec<SupportedCipherSuite> =
        rustls::crypto::ring::DEFAULT_CIPHER_SUITES.iter().copied().filter(|s| s.tls13().is_some()).collect();
    for n in names {
        let Some((_, s)) = SUITES.iter().find(|(name, _)| name == n) else {
            return Err(TlsError::Config(format!("unexpected TLS cipher suite {n:?}")));
        };
        if !out.iter().any(|o| o.suite() == s.suite()) {
            out.push(*s);
        }
    }
    Ok(out)
}

/// etcd's `--tls-min-version`/`--tls-max-version` value, as a version rustls has.
pub fn tls_version(v: &str) -> Result<Option<&'static SupportedProtocolVersion>, TlsError> {
    match v {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(&rustls::version::TLS12)),
        "TLS1.3" => Ok(Some(&rustls::version::TLS13)),
        "TLS1.0" | "TLS1.1" => Err(TlsError::Config(format!("{v} is not supported by rustcd (TLS 1.2 is the oldest)"))),
        _ => Err(TlsError::Config(format!("unexpected TLS version {v} (must be one of: TLS1.2, TLS1.3)"))),
    }
}

/// The versions between `min` and `max` (TLS 1.2 and 1.3 when unset).
pub fn versions(min: &str, max: &str, suites_set: bool) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let order = [&rustls::version::TLS12, &rustls::version::TLS13];
    let lo = tls_version(min)?.and_then(|v| order.iter().position(|o| o.version == v.version)).unwrap_or(0);
    let hi = tls_version(max)?.and_then(|v| order.iter().position(|o| o.version == v.version)).unwrap_or(1);
    if lo > hi {
        return Err(TlsError::Config("min version cannot be greater than max version".into()));
    }
    if lo == 1 && suites_set {
        return Err(TlsError::Config(
            "cipher suites cannot be configured when only TLS1.3 or greater is supported".into(),
        ));
    }
    Ok(order[lo..=hi].to_vec())
}
