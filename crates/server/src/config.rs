//! etcd's configuration: command-line flags, `ETCD_*` variables and the YAML `--config-file`,
//! with etcd's names and defaults. As in etcd, a config file replaces flags and variables.

use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

use crate::error::StartError;
use crate::url::Url;

/// Flags of the `etcd` binary that rustcd understands.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "etcd",
    disable_version_flag = true,
    about = "rustcd: a distributed, reliable key-value store (etcd v3 compatible)"
)]
pub struct Flags {
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Path to the server configuration file (YAML); flags and variables are then ignored.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    #[command(flatten)]
    pub cfg: FileConfig,
}

/// The settings, as flags/variables or as the YAML file's keys (same names).
#[derive(clap::Args, Deserialize, Debug, Clone)]
#[serde(rename_all = "kebab-case", default)]
pub struct FileConfig {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default `<name>.etcd`).
    #[arg(long, env = "ETCD_DATA_DIR", default_value = "")]
    pub data_dir: String,
    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping (`name=peerURL,...`).
    #[arg(long, env = "ETCD_INITIAL_CLUSTER", default_value = "")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Currently only supports 'debug', 'info', 'warn', 'error', 'panic', or 'fatal'.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Currently only supports 'zap' for structured logging.
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// Duration of periodic watch progress notifications.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m")]
    pub experimental_watch_progress_notify_interval: String,
    /// Number of entries for a slow follower to catch up after compacting the raft storage entries.
    #[arg(long, env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5000)]
    pub experimental_snapshot_catchup_entries: u64,
    /// Strict reconfiguration check.
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", default_value_t = true, action = clap::ArgAction::Set)]
    pub strict_reconfig_check: bool,
}

impl Default for FileConfig {
    fn default() -> Self {
        // The flags' defaults are the file's defaults.
        Flags::parse_from(["etcd"]).cfg
    }
}

/// One member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// The configuration after defaults and validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw: FileConfig,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<Url>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<InitialMember>,
    pub watch_progress_notify_interval: std::time::Duration,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
}

impl Config {
    /// Reads flags (or the config file they name) and validates them.
    pub fn load(flags: Flags) -> Result<Config, StartError> {
        let raw = match &flags.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| StartError::Config(format!("cannot read config file {}: {e}", path.display())))?;
                serde_norway::from_str::<FileConfig>(&text)
                    .map_err(|e| StartError::Config(format!("cannot parse config file {}: {e}", path.display())))?
            }
            None => flags.cfg,
        };
        Self::from_raw(raw)
    }

    pub fn from_raw(raw: FileConfig) -> Result<Config, StartError> {
        let data_dir = if raw.data_dir.is_empty() { format!("{}.etcd", raw.name) } else { raw.data_dir.clone() };
        let parse_urls = |s: &str, what: &str| -> Result<Vec<Url>, StartError> {
            split_list(s)
                .iter()
                .map(|u| Url::parse(u).map_err(|e| StartError::Config(format!("invalid {what} {u:?}: {e}"))))
                .collect()
        };
        let listen_client_urls = parse_urls(&raw.listen_client_urls, "listen-client-urls")?;
        let listen_peer_urls = parse_urls(&raw.listen_peer_urls, "listen-peer-urls")?;
        let advertise_client_urls = split_list(&raw.advertise_client_urls);
        let advertise_peer_urls = split_list(&raw.initial_advertise_peer_urls);
        let initial_cluster = if raw.initial_cluster.is_empty() {
            vec![InitialMember { name: raw.name.clone(), peer_urls: advertise_peer_urls.clone() }]
        } else {
            parse_initial_cluster(&raw.initial_cluster)?
        };
        if !initial_cluster.iter().any(|m| m.name == raw.name) {
            return Err(StartError::Config(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                raw.name
            )));
        }
        if raw.initial_cluster_state != "new" && raw.initial_cluster_state != "existing" {
            return Err(StartError::Config(format!(
                "invalid value {:?} for flag -initial-cluster-state: must be 'new' or 'existing'",
                raw.initial_cluster_state
            )));
        }
        if raw.heartbeat_interval == 0 || raw.election_timeout < 5 * raw.heartbeat_interval {
            return Err(StartError::Config(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                raw.election_timeout, raw.heartbeat_interval
            )));
        }
        let watch_progress_notify_interval = parse_duration(&raw.experimental_watch_progress_notify_interval)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                StartError::Config(format!(
                    "invalid duration {:?} for --experimental-watch-progress-notify-interval",
                    raw.experimental_watch_progress_notify_interval
                ))
            })?;
        Ok(Config {
            watch_progress_notify_interval,
            data_dir: PathBuf::from(data_dir),
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            advertise_peer_urls,
            initial_cluster,
            raw,
        })
    }
}

/// Parses a Go-style duration: `10m`, `5s`, `250ms`, `1h`, `1m30s`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = std::time::Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += std::time::Duration::from_secs_f64(n * secs);
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// Parses `name=url,name=url2,...`; a name may appear with several URLs.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<InitialMember>, StartError> {
    let mut out: Vec<InitialMember> = Vec::new();
    for part in split_list(s) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(StartError::Config(format!("invalid initial-cluster entry {part:?}")));
        };
        Url::parse(url).map_err(|e| StartError::Config(format!("invalid initial-cluster URL {url:?}: {e}")))?;
        match out.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url.to_string()),
            None => out.push(InitialMember { name: name.to_string(), peer_urls: vec![url.to_string()] }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_etcd() {
        let c = Config::from_raw(FileConfig::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls[0].port, 2379);
        assert_eq!(
            c.initial_cluster,
            vec![InitialMember { name: "default".into(), peer_urls: vec!["http://localhost:2380".into()] }]
        );
        assert_eq!((c.raw.max_request_bytes, c.raw.max_txn_ops), (1_572_864, 128));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10m"), Some(std::time::Duration::from_secs(600)));
        assert_eq!(parse_duration("1m30s"), Some(std::time::Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(std::time::Duration::from_millis(250)));
        assert_eq!(parse_duration("ten"), None);
    }

    #[test]
    fn yaml_keys_are_etcds() {
        let y = "name: etcd-1\ndata-dir: /tmp/x\ninitial-cluster: etcd-1=http://127.0.0.2:2390,etcd-2=http://127.0.0.2:2391\nlisten-client-urls: http://127.0.0.2:2369,http://localhost:2369\n";
        let raw: FileConfig = serde_norway::from_str(y).unwrap();
        let c = Config::from_raw(raw).unwrap();
        assert_eq!(c.initial_cluster.len(), 2);
        assert_eq!(c.listen_client_urls.len(), 2);
        assert_eq!(c.raw.heartbeat_interval, 100);
    }
}
