//! URLs as etcd's flags take them: `http://host:port` (also `https`), and `unix://path` for a
//! Unix socket (etcd takes everything after `unix://` as the socket's path, `:port` included).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let (scheme, rest) = s.split_once("://").ok_or("missing scheme")?;
        if scheme == "unix" {
            if rest.is_empty() {
                return Err("missing socket path".into());
            }
            return Ok(Url { scheme: scheme.to_string(), host: rest.to_string(), port: 0 });
        }
        if scheme != "http" && scheme != "https" {
            return Err(format!("unsupported scheme {scheme:?}"));
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().map_err(|e| e.to_string())?)
            }
            _ => return Err("missing port".into()),
        };
        if host.is_empty() {
            return Err("missing host".into());
        }
        Ok(Url { scheme: scheme.to_string(), host: host.to_string(), port })
    }

    /// `host:port`, resolvable by the standard library.
    pub fn host_port(&self) -> String {
        if self.scheme == "unix" {
            self.host.clone()
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host_port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_urls() {
        let u = Url::parse("http://127.0.0.2:2369").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.2", 2369));
        assert!(Url::parse("127.0.0.1:2379").is_err());
        assert!(Url::parse("http://localhost").is_err());
        assert_eq!(Url::parse("http://[::1]:2379").unwrap().host, "::1");
        assert_eq!(Url::parse("unix://etcd.unix:1").unwrap().to_string(), "unix://etcd.unix:1");
    }
}
