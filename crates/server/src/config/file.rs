//! The YAML `--config-file`, with etcd's keys: the flag names, the TLS blocks
//! `client-transport-security` and `peer-transport-security`, `socket-options`, and
//! `experimental-snapshot-catch-up-entries`. Durations are numbers of nanoseconds (etcd reads
//! the file as JSON into Go's `time.Duration`); Go duration strings are taken too. A key etcd
//! does not know is warned about, never dropped unseen.

use std::path::Path;

use serde_norway::Value;

use super::parse::{Note, Values};
use super::table::{Kind, flag};

/// The flag a key of a TLS block stands for.
fn tls_key(block: &str, key: &str) -> Option<String> {
    let peer = block == "peer-transport-security";
    let name = match key {
        "cert-file" | "key-file" | "client-cert-file" | "client-key-file" | "trusted-ca-file" | "client-cert-auth"
        | "auto-tls" => key.to_string(),
        "crl-file" => if peer { "crl-file" } else { "client-crl-file" }.into(),
        "allowed-cn" if peer => "cert-allowed-cn".into(),
        "allowed-hostname" => if peer { "cert-allowed-hostname" } else { "client-cert-allowed-hostname" }.into(),
        "skip-client-san-verification" if peer => return Some("experimental-peer-skip-client-san-verification".into()),
        _ => return None,
    };
    Some(if peer { format!("peer-{name}") } else { name })
}

/// A YAML scalar or list as a flag would give it.
fn text(name: &str, v: &Value) -> Result<Option<String>, String> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if flag(name).is_some_and(|f| f.kind == Kind::Duration) {
                // nanoseconds
                format!("{}ns", n.as_i64().ok_or_else(|| format!("invalid duration {n} for {name}"))?)
            } else {
                n.to_string()
            }
        }
        Value::String(s) => s.clone(),
        Value::Sequence(items) => {
            let mut parts = Vec::new();
            for item in items {
                if let Some(t) = text(name, item)? {
                    parts.push(t);
                }
            }
            parts.join(",")
        }
        other => return Err(format!("unexpected value for {name}: {other:?}")),
    }))
}

fn set(values: &mut Values, key_path: &str, name: &str, v: &Value) -> Result<(), String> {
    let Some(t) = text(name, v)? else { return Ok(()) };
    values.set(name, &t).map_err(|e| format!("invalid value {t:?} for {key_path}: {e}"))
}

/// Reads the file at `path`.
pub fn read(path: &Path) -> Result<Values, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("error parsing config file {}: {e}", path.display()))
}

/// Parses the YAML text of a config file.
pub fn parse(text: &str) -> Result<Values, String> {
    let mut values = Values::default();
    let doc: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Ok(values),
        _ => return Err("the file is not a YAML mapping".into()),
    };
    for (k, v) in &map {
        let Some(key) = k.as_str() else { return Err(format!("unexpected key {k:?}")) };
        match key {
            "client-transport-security" | "peer-transport-security" | "socket-options" => {
                let Value::Mapping(inner) = v else {
                    if v.is_null() {
                        continue;
                    }
                    return Err(format!("{key} must be a mapping"));
                };
                for (ik, iv) in inner {
                    let Some(ik) = ik.as_str() else { return Err(format!("unexpected key {ik:?} in {key}")) };
                    let name = if key == "socket-options" {
                        matches!(ik, "reuse-port" | "reuse-address").then(|| format!("socket-{ik}"))
                    } else {
                        tls_key(key, ik)
                    };
                    match name {
                        Some(n) => set(&mut values, &format!("{key}.{ik}"), &n, iv)?,
                        None => values.notes.push(unknown(&format!("{key}.{ik}"))),
                    }
                }
            }
            "experimental-snapshot-catch-up-entries" => {
                set(&mut values, key, "experimental-snapshot-catchup-entries", v)?
            }
            "config-file" | "version" => values.notes.push(unknown(key)),
            _ if flag(key).is_some() => set(&mut values, key, key, v)?,
            _ => values.notes.push(unknown(key)),
        }
    }
    Ok(values)
}

fn unknown(key: &str) -> Note {
    Note::warn("unrecognized configuration file key; it has no effect", vec![("key", key.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_blocks_and_durations() {
        let v = parse(
            "name: n1\nsnapshot-count: 7\nlog-outputs: [stderr, stdout]\ngrpc-keepalive-timeout: 3000000000\n\
             experimental-watch-progress-notify-interval: 5s\nclient-transport-security:\n  client-cert-auth: true\n  \
             crl-file: /c\npeer-transport-security:\n  allowed-cn: x\nsocket-options:\n  reuse-port: true\n\
             experimental-snapshot-catch-up-entries: 9\nbogus: 1\ndata-dir:\n",
        )
        .unwrap();
        assert_eq!(v.get("name"), "n1");
        assert_eq!(v.uint("snapshot-count"), 7);
        assert_eq!(v.list("log-outputs"), ["stderr", "stdout"]);
        assert_eq!(v.duration("grpc-keepalive-timeout"), std::time::Duration::from_secs(3));
        assert_eq!(v.duration("experimental-watch-progress-notify-interval"), std::time::Duration::from_secs(5));
        assert!(v.bool("client-cert-auth"));
        assert_eq!(v.get("client-crl-file"), "/c");
        assert_eq!(v.get("peer-cert-allowed-cn"), "x");
        assert!(v.bool("socket-reuse-port"));
        assert_eq!(v.uint("experimental-snapshot-catchup-entries"), 9);
        assert!(!v.is_set("data-dir"));
        assert!(v.notes.iter().any(|n| n.warn && n.fields[0].1 == "bogus"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("snapshot-count: lots\n").unwrap_err();
        assert!(e.contains("snapshot-count"), "{e}");
    }
}
