//! JWT tokens (`--auth-token=jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>,ttl=<dur>`),
//! as etcd makes them: claims `{"exp", "revision", "username"}`, signed with RS256/384/512,
//! PS256/384/512, ES256/384 or HS256/384/512. RSA and ECDSA keys are PEM (a private key in
//! PKCS#1 or PKCS#8; a public key as a certificate, SPKI or PKCS#1); an HMAC key is the file's
//! bytes. A member with only the public key checks tokens but cannot make them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature;

use crate::{AuthError, AuthInfo};

#[derive(Clone)]
enum Signer {
    Rsa(std::sync::Arc<signature::RsaKeyPair>, &'static dyn signature::RsaEncoding),
    Ecdsa(std::sync::Arc<signature::EcdsaKeyPair>),
    Hmac(ring::hmac::Key),
}

#[derive(Clone)]
enum Verifier {
    Public(Vec<u8>, &'static dyn signature::VerificationAlgorithm),
    Hmac(ring::hmac::Key),
}

/// The JWT settings, keys loaded.
#[derive(Clone)]
pub struct JwtOptions {
    method: String,
    ttl: Duration,
    signer: Option<Signer>,
    verifier: Verifier,
}

impl std::fmt::Debug for JwtOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtOptions").field("method", &self.method).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::InvalidOptions(why.into())
}

/// The DER blocks of a PEM file, with their labels.
fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut label = None;
    let mut body = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(l) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
            label = Some(l.to_string());
            body.clear();
        } else if line.starts_with("-----END ") {
            if let (Some(l), Ok(der)) = (label.take(), STANDARD.decode(body.as_bytes())) {
                out.push((l, der));
            }
        } else if label.is_some() {
            body.push_str(line);
        }
    }
    out
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subjectPublicKey bits of a SubjectPublicKeyInfo.
fn spki_key(spki: &[u8]) -> Option<Vec<u8>> {
    let (_, body, _) = der(spki)?;
    let (_, _alg, rest) = der(body)?;
    let (tag, bits, _) = der(rest)?;
    // a BIT STRING whose first byte counts unused bits (0 for keys)
    (tag == 0x03 && bits.first() == Some(&0)).then(|| bits[1..].to_vec())
}

/// A certificate's SubjectPublicKeyInfo, whole.
fn cert_spki(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, body, _) = der(cert)?;
    let (_, tbs, _) = der(body)?;
    let mut rest = tbs;
    // [0] version, if present
    if rest.first() == Some(&0xa0) {
        rest = der(rest)?.2;
    }
    // serial, signature algorithm, issuer, validity, subject
    for _ in 0..5 {
        rest = der(rest)?.2;
    }
    let (_, _, after) = der(rest)?;
    Some(rest[..rest.len() - after.len()].to_vec())
}

fn read(path: &str) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|e| invalid(format!("{path}: {e}")))
}

impl JwtOptions {
    /// From `--auth-token`'s options (`pub-key`, `priv-key`, `sign-method`, `ttl`).
    /// `duration` reads Go's duration syntax (`5m`), as the caller's flags do.
    pub fn from_map(
        opts: &HashMap<String, String>,
        duration: &dyn Fn(&str) -> Option<Duration>,
    ) -> Result<JwtOptions, AuthError> {
        let method = opts.get("sign-method").cloned().ok_or_else(|| invalid("jwt needs sign-method"))?;
        let ttl = match opts.get("ttl") {
            Some(t) => duration(t).ok_or_else(|| invalid(format!("invalid ttl {t:?}")))?,
            None => Duration::from_secs(300),
        };
        let (pub_key, priv_key) = (opts.get("pub-key"), opts.get("priv-key"));
        use signature::*;
        let (rsa_verify, rsa_sign): (&'static dyn VerificationAlgorithm, &'static dyn RsaEncoding) =
            match method.as_str() {
                "RS256" => (&RSA_PKCS1_2048_8192_SHA256, &RSA_PKCS1_SHA256),
                "RS384" => (&RSA_PKCS1_2048_8192_SHA384, &RSA_PKCS1_SHA384),
                "RS512" => (&RSA_PKCS1_2048_8192_SHA512, &RSA_PKCS1_SHA512),
                "PS256" => (&RSA_PSS_2048_8192_SHA256, &RSA_PSS_SHA256),
                "PS384" => (&RSA_PSS_2048_8192_SHA384, &RSA_PSS_SHA384),
                "PS512" => (&RSA_PSS_2048_8192_SHA512, &RSA_PSS_SHA512),
                _ => (&RSA_PKCS1_2048_8192_SHA256, &RSA_PKCS1_SHA256),
            };
        let (signer, verifier) = match method.as_str() {
            "HS256" | "HS384" | "HS512" => {
                let alg = match method.as_str() {
                    "HS256" => ring::hmac::HMAC_SHA256,
                    "HS384" => ring::hmac::HMAC_SHA384,
                    _ => ring::hmac::HMAC_SHA512,
                };
                let path = priv_key.ok_or_else(|| invalid("HMAC signing needs priv-key"))?;
                let key = ring::hmac::Key::new(alg, &read(path)?);
                (Some(Signer::Hmac(key.clone())), Verifier::Hmac(key))
            }
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" => {
                let ecdsa = match method.as_str() {
                    "ES256" => Some((&ECDSA_P256_SHA256_FIXED_SIGNING, &ECDSA_P256_SHA256_FIXED)),
                    "ES384" => Some((&ECDSA_P384_SHA384_FIXED_SIGNING, &ECDSA_P384_SHA384_FIXED)),
                    _ => None,
                };
                let signer = match priv_key {
                    None => None,
                    Some(path) => {
                        let text = String::from_utf8_lossy(&read(path)?).into_owned();
                        let (label, der) = pem_blocks(&text)
                            .into_iter()
                            .next()
                            .ok_or_else(|| invalid(format!("{path}: no PEM key")))?;
                        Some(match (ecdsa, label.as_str()) {
                            (Some((alg, _)), "PRIVATE KEY") => {
                                let k = EcdsaKeyPair::from_pkcs8(alg, &der, &ring::rand::SystemRandom::new())
                                    .map_err(|e| invalid(format!("{path}: {e}")))?;
                                Signer::Ecdsa(std::sync::Arc::new(k))
                            }
                            (Some(_), other) => {
                                return Err(invalid(format!(
                                    "{path}: an {other} key; give ECDSA keys in PKCS#8 (BEGIN PRIVATE KEY)"
                                )));
                            }
                            (None, "RSA PRIVATE KEY") => Signer::Rsa(
                                std::sync::Arc::new(
                                    RsaKeyPair::from_der(&der).map_err(|e| invalid(format!("{path}: {e}")))?,
                                ),
                                rsa_sign,
                            ),
                            (None, _) => Signer::Rsa(
                                std::sync::Arc::new(
                                    RsaKeyPair::from_pkcs8(&der).map_err(|e| invalid(format!("{path}: {e}")))?,
                                ),
                                rsa_sign,
                            ),
                        })
                    }
                };
                let verify_alg: &'static dyn VerificationAlgorithm = match ecdsa {
                    Some((_, v)) => v,
                    None => rsa_verify,
                };
                let public = match (pub_key, &signer) {
                    (Some(path), _) => {
                        let text = String::from_utf8_lossy(&read(path)?).into_owned();
                        let (label, der) = pem_blocks(&text)
                            .into_iter()
                            .next()
                            .ok_or_else(|| invalid(format!("{path}: no PEM key")))?;
                        match label.as_str() {
                            "CERTIFICATE" => cert_spki(&der).and_then(|s| spki_key(&s)),
                            "PUBLIC KEY" => spki_key(&der),
                            "RSA PUBLIC KEY" => Some(der),
                            _ => None,
                        }
                        .ok_or_else(|| invalid(format!("{path}: not a public key")))?
                    }
                    (None, Some(Signer::Rsa(k, _))) => k.public_key().as_ref().to_vec(),
                    (None, Some(Signer::Ecdsa(k))) => k.public_key().as_ref().to_vec(),
                    _ => return Err(invalid("jwt needs pub-key")),
                };
                (signer, Verifier::Public(public, verify_alg))
            }
            other => return Err(invalid(format!("unsupported sign-method {other:?}"))),
        };
        Ok(JwtOptions { method, ttl, signer, verifier })
    }

    pub(crate) fn sign(&self, username: &str, revision: u64) -> Result<String, AuthError> {
        let signer = self
            .signer
            .as_ref()
            .ok_or_else(|| AuthError::Backend("auth: this member has no key to sign tokens".into()))?;
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + self.ttl;
        let header = serde_json::json!({"alg": self.method, "typ": "JWT"});
        let claims = serde_json::json!({"exp": exp.as_secs(), "revision": revision, "username": username});
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let rng = ring::rand::SystemRandom::new();
        let sig = match signer {
            Signer::Rsa(k, enc) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(*enc, &rng, input.as_bytes(), &mut sig).map_err(|e| AuthError::Backend(e.to_string()))?;
                sig
            }
            Signer::Ecdsa(k) => {
                k.sign(&rng, input.as_bytes()).map_err(|e| AuthError::Backend(e.to_string()))?.as_ref().to_vec()
            }
            Signer::Hmac(k) => ring::hmac::sign(k, input.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// The user and revision of a token this key signed that has not expired.
    pub(crate) fn verify(&self, token: &str) -> Option<AuthInfo> {
        let (input, sig) = token.rsplit_once('.')?;
        let (header, claims) = input.split_once('.')?;
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != self.method {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let ok = match &self.verifier {
            Verifier::Public(key, alg) => {
                signature::UnparsedPublicKey::new(*alg, key).verify(input.as_bytes(), &sig).is_ok()
            }
            Verifier::Hmac(k) => ring::hmac::verify(k, input.as_bytes(), &sig).is_ok(),
        };
        if !ok {
            tracing::warn!("failed to parse a JWT token");
            return None;
        }
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
        if claims.get("exp").and_then(|e| e.as_f64()).is_some_and(|exp| exp < now) {
            return None;
        }
        let username = claims.get("username")?.as_str()?.to_string();
        let revision = claims.get("revision")?.as_f64()? as u64;
        Some(AuthInfo { username, revision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_tokens_carry_user_and_revision_and_expire() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("hmac.key");
        std::fs::write(&key, b"a secret of enough length for hmac").expect("key");
        let map = |ttl: &str| {
            let mut m = HashMap::new();
            m.insert("sign-method".to_string(), "HS256".to_string());
            m.insert("priv-key".to_string(), key.display().to_string());
            m.insert("ttl".to_string(), ttl.to_string());
            m
        };
        let secs =
            |t: &str| t.strip_suffix('s').or(t.strip_suffix('m')).and_then(|n| n.parse().ok()).map(Duration::from_secs);
        let j = JwtOptions::from_map(&map("5m"), &secs).expect("options");
        let t = j.sign("alice", 7).expect("sign");
        assert_eq!(j.verify(&t), Some(AuthInfo { username: "alice".into(), revision: 7 }));
        let mut forged = t.clone();
        forged.replace_range(forged.len() - 2.., "AA");
        assert_eq!(j.verify(&forged), None);
        let short = JwtOptions::from_map(&map("0s"), &secs).expect("options");
        let old = short.sign("alice", 7).expect("sign");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(short.verify(&old), None, "expired");
        let mut bad = map("5m");
        bad.insert("sign-method".into(), "none".into());
        assert!(JwtOptions::from_map(&bad, &secs).is_err());
    }
}
