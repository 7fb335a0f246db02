//! JWT tokens (`--auth-token=jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>,ttl=<dur>`),
//! as etcd makes them: claims `{"exp", "revision", "username"}`, signed with RS256/384/512,
//! PS256/384/512, ES256/384 or HS256/384/512 (the `jsonwebtoken` crate). RSA and ECDSA keys are
//! PEM: a private key in PKCS#1 or PKCS#8 (ECDSA: PKCS#8), a public key as SPKI, PKCS#1 (RSA) or
//! a certificate, as etcd takes them; an HMAC key is the file's bytes. A member with only the
//! public key checks tokens but cannot make them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{AuthError, AuthInfo};

/// The JWT settings, keys loaded.
#[derive(Clone)]
pub struct JwtOptions {
    alg: Algorithm,
    ttl: Duration,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
}

impl std::fmt::Debug for JwtOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtOptions").field("alg", &self.alg).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// etcd's claims.
#[derive(Serialize, Deserialize)]
struct Claims {
    exp: u64,
    revision: u64,
    username: String,
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::InvalidOptions(why.into())
}

fn key_error(path: &str) -> impl Fn(jsonwebtoken::errors::Error) -> AuthError + '_ {
    move |e| invalid(format!("{path}: {e}"))
}

fn read(path: &str) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|e| invalid(format!("{path}: {e}")))
}

impl JwtOptions {
    /// From `--auth-token`'s options (`pub-key`, `priv-key`, `sign-method`, `ttl`, in Go's
    /// duration syntax: `5m`).
    pub fn from_map(opts: &HashMap<String, String>) -> Result<JwtOptions, AuthError> {
        use Algorithm::*;
        let method = opts.get("sign-method").ok_or_else(|| invalid("jwt needs sign-method"))?;
        let alg = match method.as_str() {
            "RS256" => RS256,
            "RS384" => RS384,
            "RS512" => RS512,
            "PS256" => PS256,
            "PS384" => PS384,
            "PS512" => PS512,
            "ES256" => ES256,
            "ES384" => ES384,
            "HS256" => HS256,
            "HS384" => HS384,
            "HS512" => HS512,
            other => return Err(invalid(format!("unsupported sign-method {other:?}"))),
        };
        let ttl = match opts.get("ttl") {
            Some(t) => rustcd_gocompat::parse_std_duration(t).map_err(|_| invalid(format!("invalid ttl {t:?}")))?,
            None => Duration::from_secs(300),
        };
        let (priv_key, pub_key) = (opts.get("priv-key"), opts.get("pub-key"));
        let (encoding, decoding) = if matches!(alg, HS256 | HS384 | HS512) {
            let path = priv_key.ok_or_else(|| invalid("HMAC signing needs priv-key"))?;
            let secret = read(path)?;
            (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
        } else {
            let ecdsa = matches!(alg, ES256 | ES384);
            let encoding = match priv_key {
                None => None,
                Some(path) => {
                    let pem = read(path)?;
                    let key = if ecdsa { EncodingKey::from_ec_pem(&pem) } else { EncodingKey::from_rsa_pem(&pem) };
                    Some(key.map_err(key_error(path))?)
                }
            };
            let path = pub_key.ok_or_else(|| invalid("jwt needs pub-key"))?;
            let pem = read(path)?;
            let decoding = if String::from_utf8_lossy(&pem).contains("BEGIN CERTIFICATE") {
                let bits = rustcd_tls::certificate_public_key(&pem)
                    .ok_or_else(|| invalid(format!("{path}: no public key in the certificate")))?;
                if ecdsa { DecodingKey::from_ec_der(&bits) } else { DecodingKey::from_rsa_der(&bits) }
            } else if ecdsa {
                DecodingKey::from_ec_pem(&pem).map_err(key_error(path))?
            } else {
                DecodingKey::from_rsa_pem(&pem).map_err(key_error(path))?
            };
            (encoding, decoding)
        };
        Ok(JwtOptions { alg, ttl, encoding, decoding })
    }

    pub(crate) fn sign(&self, username: &str, revision: u64) -> Result<String, AuthError> {
        let key = self
            .encoding
            .as_ref()
            .ok_or_else(|| AuthError::Backend("auth: this member has no key to sign tokens".into()))?;
        let exp = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + self.ttl).as_secs();
        let claims = Claims { exp, revision, username: username.to_string() };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, key).map_err(|e| AuthError::Backend(e.to_string()))
    }

    /// The user and revision of a token this key signed that has not expired.
    pub(crate) fn verify(&self, token: &str) -> Option<AuthInfo> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &v) {
            Ok(t) => Some(AuthInfo { username: t.claims.username, revision: t.claims.revision }),
            Err(e) => {
                tracing::warn!(error = %e, "failed to parse a JWT token");
                None
            }
        }
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
        let j = JwtOptions::from_map(&map("5m")).expect("options");
        let t = j.sign("alice", 7).expect("sign");
        assert_eq!(j.verify(&t), Some(AuthInfo { username: "alice".into(), revision: 7 }));
        let mut forged = t.clone();
        forged.replace_range(forged.len() - 2.., "AA");
        assert_eq!(j.verify(&forged), None);
        let short = JwtOptions::from_map(&map("0s")).expect("options");
        let old = short.sign("alice", 7).expect("sign");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(short.verify(&old), None, "expired");
        let mut bad = map("5m");
        bad.insert("sign-method".into(), "none".into());
        assert!(JwtOptions::from_map(&bad).is_err());
    }
}
