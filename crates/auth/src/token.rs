//! Tokens (etcd's `--auth-token`): `simple` tokens are random strings a member keeps in memory,
//! `<16 letters>.<raft index>`, valid until `--auth-token-ttl` seconds pass without use (and
//! gone when the member restarts, or when their user is deleted or changes password); `jwt`
//! tokens are signed claims (`username`, `revision`, `exp`) any member holding the key can
//! check.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::jwt::JwtOptions;
use crate::{AuthError, AuthInfo};

/// `--auth-token` and `--auth-token-ttl`.
#[derive(Debug, Clone)]
pub enum TokenOptions {
    Simple { ttl: Duration },
    Jwt(Box<JwtOptions>),
}

impl Default for TokenOptions {
    fn default() -> Self {
        TokenOptions::Simple { ttl: Duration::from_secs(300) }
    }
}

/// Reads `--auth-token` (`simple`, or `jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`),
/// with `--auth-token-ttl` for simple tokens.
pub fn parse_token_options(spec: &str, ttl_secs: u64) -> Result<TokenOptions, AuthError> {
    let mut parts = spec.split(',');
    match parts.next().unwrap_or("") {
        "simple" | "" => Ok(TokenOptions::Simple { ttl: Duration::from_secs(ttl_secs) }),
        "jwt" => {
            let mut opts = HashMap::new();
            for p in parts {
                let (k, v) =
                    p.split_once('=').ok_or_else(|| AuthError::InvalidOptions(format!("malformed option {p:?}")))?;
                opts.insert(k.to_string(), v.to_string());
            }
            Ok(TokenOptions::Jwt(Box::new(JwtOptions::from_map(&opts)?)))
        }
        other => Err(AuthError::InvalidOptions(format!("unknown token type {other:?}"))),
    }
}

struct Simple {
    user: String,
    last_used: Instant,
}

pub(crate) struct Tokens {
    options: TokenOptions,
    simple: Mutex<HashMap<String, Simple>>,
}

impl Tokens {
    pub fn new(options: TokenOptions) -> Tokens {
        Tokens { options, simple: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Simple>> {
        self.simple.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token for `user` at auth revision `revision`; a simple one is `<prefix>.<index>`.
    pub fn assign(&self, user: &str, revision: u64, prefix: &str, index: u64) -> Result<String, AuthError> {
        match &self.options {
            TokenOptions::Simple { .. } => {
                let token = format!("{prefix}.{index}");
                self.lock().insert(token.clone(), Simple { user: user.to_string(), last_used: Instant::now() });
                Ok(token)
            }
            TokenOptions::Jwt(j) => j.sign(user, revision),
        }
    }

    /// Who `token` names: a simple token at the current revision (its use renews it), a JWT at
    /// the revision it was signed at.
    pub fn info(&self, token: &str, current_revision: u64) -> Option<AuthInfo> {
        match &self.options {
            TokenOptions::Simple { ttl } => {
                let mut tokens = self.lock();
                let t = tokens.get_mut(token)?;
                if t.last_used.elapsed() > *ttl {
                    tokens.remove(token);
                    return None;
                }
                t.last_used = Instant::now();
                Some(AuthInfo { username: t.user.clone(), revision: current_revision })
            }
            TokenOptions::Jwt(j) => j.verify(token),
        }
    }

    pub fn invalidate_user(&self, user: &str) {
        self.lock().retain(|_, t| t.user != user);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// 16 random letters, as etcd's simple tokens begin.
pub(crate) fn random_prefix() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = [0u8; 16];
    // SystemRandom fails only without an OS random source; the counter-based fallback keeps
    // tokens distinct then, if not secret.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = n.to_le_bytes();
    }
    bytes.iter().map(|b| LETTERS[*b as usize % LETTERS.len()] as char).collect()
}

/// The raft index in a simple token.
pub(crate) fn simple_index(token: &str) -> Option<u64> {
    let (prefix, index) = token.rsplit_once('.')?;
    (prefix.len() == 16 && prefix.bytes().all(|b| b.is_ascii_alphabetic())).then_some(())?;
    index.parse().ok()
}

/// What may be logged of a token: etcd's redaction.
pub(crate) fn fingerprint(token: &str) -> String {
    match token.rsplit_once('.') {
        Some((_, tail)) if !tail.is_empty() => format!("{}...", &tail[..tail.len().min(8)]),
        _ => "<redacted>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_expire_unused_and_die_with_their_user() {
        let t = Tokens::new(TokenOptions::Simple { ttl: Duration::from_millis(50) });
        let a = t.assign("alice", 3, &random_prefix(), 12).expect("token");
        assert_eq!(simple_index(&a), Some(12));
        assert_eq!(t.info(&a, 5), Some(AuthInfo { username: "alice".into(), revision: 5 }));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(t.info(&a, 5), None, "unused past its TTL");
        let b = t.assign("bob", 3, &random_prefix(), 13).expect("token");
        t.invalidate_user("bob");
        assert_eq!(t.info(&b, 5), None);
        assert!(parse_token_options("bogus", 1).is_err());
        assert!(
            matches!(parse_token_options("simple", 9), Ok(TokenOptions::Simple { ttl }) if ttl == Duration::from_secs(9))
        );
    }
}
