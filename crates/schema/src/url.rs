//! URLs as etcd's flags take them: `http://host:port` (also `https`), and `unix://path` for a
//! Unix socket (etcd takes everything after `unix://` as the socket's path, `:port` included;
//! also `unixs`), checked with etcd's rules and error texts (its `types.NewURLs`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let bad_scheme = || format!("URL scheme must be http, https, unix, or unixs: {s}");
        let (scheme, rest) = s.split_once("://").ok_or_else(bad_scheme)?;
        match scheme {
            "unix" | "unixs" if !rest.is_empty() => {
                return Ok(Url { scheme: scheme.to_string(), host: rest.to_string(), port: 0 });
            }
            "http" | "https" => {}
            _ => return Err(bad_scheme()),
        }
        let (address, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() {
            return Err(format!("URL must not contain a path: {s}"));
        }
        let not_host_port = || format!("URL address does not have the form \"host:port\": {s}");
        let (host, port) = match address.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().map_err(|_| not_host_port())?)
            }
            _ => return Err(not_host_port()),
        };
        if host.is_empty() {
            return Err(not_host_port());
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
        assert!(Url::parse("http://localhost:1/path").is_err());
        assert!(Url::parse("ftp://localhost:1").is_err());
        assert_eq!(Url::parse("http://127.0.0.1:2379/").unwrap().port, 2379);
        assert_eq!(Url::parse("http://[::1]:2379").unwrap().host, "::1");
        assert_eq!(Url::parse("unix://etcd.unix:1").unwrap().to_string(), "unix://etcd.unix:1");
    }
}
