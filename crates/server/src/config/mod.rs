//! etcd's configuration: command-line flags, `ETCD_*` variables and the YAML `--config-file`,
//! with etcd's names, defaults, parsing rules and error texts. As in etcd, a config file replaces
//! flags and variables. Every flag etcd 3.5 knows is in [`table::FLAGS`] with what rustcd does
//! with it: nothing given is silently ignored (see [`Config::check_support`]).

pub mod discovery;
pub mod file;
pub mod parse;
pub mod settings;
pub mod table;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

/// One member of the initial cluster.
pub use rustcd_schema::cluster::InitialMember;
/// etcd's URLs (`rustcd-schema`'s: the initial cluster a data dir is made from names them).
pub use rustcd_schema::url;

use crate::error::StartError;
use parse::{Note, Values};
use table::Support;
use url::Url;

/// The settings rustcd implements, typed, after defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    /// Path to the data directory (empty: `<name>.etcd`).
    pub data_dir: String,
    /// Path to the raft log's directory (empty: inside the data directory).
    pub wal_dir: String,
    pub listen_client_urls: String,
    pub advertise_client_urls: String,
    pub listen_peer_urls: String,
    pub initial_advertise_peer_urls: String,
    pub listen_metrics_urls: String,
    /// `--metrics extensive`: the gRPC handling-time histograms too.
    pub metrics_extensive: bool,
    /// `--enable-grpc-gateway` (etcd 3.4's; on by default): the JSON gateway on the client URLs.
    pub enable_grpc_gateway: bool,
    /// `--enable-dashboard` (rustcd's own): the live dashboard at `/dashboard`.
    pub enable_dashboard: bool,
    pub listen_client_http_urls: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_cluster_state: String,
    pub discovery: String,
    pub discovery_proxy: String,
    pub discovery_fallback: String,
    pub discovery_srv: String,
    pub discovery_srv_name: String,
    pub snapshot_count: u64,
    pub heartbeat_interval: u64,
    pub election_timeout: u64,
    pub max_request_bytes: u64,
    pub max_txn_ops: usize,
    pub max_concurrent_streams: u32,
    pub grpc_keepalive_interval: Duration,
    pub grpc_keepalive_timeout: Duration,
    pub socket_reuse_port: bool,
    pub log_level: String,
    pub log_outputs: Vec<String>,
    pub enable_log_rotation: bool,
    pub log_rotation_config_json: String,
    pub experimental_watch_progress_notify_interval: Duration,
    pub experimental_snapshot_catchup_entries: u64,
    pub experimental_initial_corrupt_check: bool,
    /// 0: no periodic corruption check.
    pub experimental_corrupt_check_time: Duration,
    pub experimental_warning_apply_duration: Duration,
    pub experimental_compact_hash_check_enabled: bool,
    pub experimental_compact_hash_check_time: Duration,
    pub strict_reconfig_check: bool,
    pub pre_vote: bool,
    pub initial_election_tick_advance: bool,
    pub unsafe_no_fsync: bool,
    pub force_new_cluster: bool,
    pub auto_compaction_mode: String,
    pub auto_compaction_retention: String,
    pub tls: tls::TlsSettings,
    /// `--quota-backend-bytes` (0: etcd's 2 GiB; negative: none).
    pub quota_backend_bytes: i64,
    /// `--cors` and `--host-whitelist`.
    pub cors: Vec<String>,
    pub host_whitelist: Vec<String>,
    /// `--auth-token`, `--auth-token-ttl` (seconds) and `--bcrypt-cost`.
    pub auth_token: String,
    pub auth_token_ttl: u64,
    pub bcrypt_cost: u64,
    /// `--experimental-enable-distributed-tracing` and its settings.
    pub distributed_tracing: Option<crate::config::settings::TracingSettings>,
    /// `--proxy`: off, on or readonly (etcd's HTTP proxy, [`crate::proxy::v2proxy`]).
    pub proxy: String,
    pub proxy_failure_wait: Duration,
    pub proxy_refresh_interval: Duration,
    pub proxy_dial_timeout: Duration,
    pub proxy_read_timeout: Duration,
}

impl Settings {
    pub fn from_values(v: &Values) -> Settings {
        Settings {
            name: v.get("name"),
            data_dir: v.get("data-dir"),
            wal_dir: v.get("wal-dir"),
            listen_client_urls: v.get("listen-client-urls"),
            advertise_client_urls: v.get("advertise-client-urls"),
            listen_peer_urls: v.get("listen-peer-urls"),
            initial_advertise_peer_urls: v.get("initial-advertise-peer-urls"),
            listen_metrics_urls: v.get("listen-metrics-urls"),
            metrics_extensive: v.get("metrics") == "extensive",
            enable_grpc_gateway: v.bool("enable-grpc-gateway"),
            enable_dashboard: v.bool("enable-dashboard"),
            listen_client_http_urls: v.get("listen-client-http-urls"),
            initial_cluster: v.get("initial-cluster"),
            initial_cluster_token: v.get("initial-cluster-token"),
            initial_cluster_state: v.get("initial-cluster-state"),
            discovery: v.get("discovery"),
            discovery_proxy: v.get("discovery-proxy"),
            discovery_fallback: v.get("discovery-fallback"),
            discovery_srv: v.get("discovery-srv"),
            discovery_srv_name: v.get("discovery-srv-name"),
            snapshot_count: v.uint("snapshot-count"),
            heartbeat_interval: v.uint("heartbeat-interval"),
            election_timeout: v.uint("election-timeout"),
            max_request_bytes: v.uint("max-request-bytes"),
            max_txn_ops: usize::try_from(v.uint("max-txn-ops")).unwrap_or(usize::MAX),
            max_concurrent_streams: u32::try_from(v.uint("max-concurrent-streams")).unwrap_or(u32::MAX),
            grpc_keepalive_interval: v.duration("grpc-keepalive-interval"),
            grpc_keepalive_timeout: v.duration("grpc-keepalive-timeout"),
            socket_reuse_port: v.bool("socket-reuse-port"),
            log_level: v.get("log-level"),
            log_outputs: v.list("log-outputs"),
            enable_log_rotation: v.bool("enable-log-rotation"),
            log_rotation_config_json: v.get("log-rotation-config-json"),
            experimental_watch_progress_notify_interval: v.duration("experimental-watch-progress-notify-interval"),
            experimental_snapshot_catchup_entries: v.uint("experimental-snapshot-catchup-entries"),
            experimental_initial_corrupt_check: v.bool("experimental-initial-corrupt-check"),
            experimental_corrupt_check_time: v.duration("experimental-corrupt-check-time"),
            experimental_warning_apply_duration: v.duration("experimental-warning-apply-duration"),
            experimental_compact_hash_check_enabled: v.bool("experimental-compact-hash-check-enabled"),
            experimental_compact_hash_check_time: v.duration("experimental-compact-hash-check-time"),
            strict_reconfig_check: v.bool("strict-reconfig-check"),
            pre_vote: v.bool("pre-vote"),
            initial_election_tick_advance: v.bool("initial-election-tick-advance"),
            unsafe_no_fsync: v.bool("unsafe-no-fsync"),
            force_new_cluster: v.bool("force-new-cluster"),
            auto_compaction_mode: v.get("auto-compaction-mode"),
            auto_compaction_retention: v.get("auto-compaction-retention"),
            tls: tls::TlsSettings::from_values(v),
            quota_backend_bytes: v.int("quota-backend-bytes"),
            cors: v.list("cors"),
            host_whitelist: v.list("host-whitelist"),
            auth_token: v.get("auth-token"),
            auth_token_ttl: v.uint("auth-token-ttl"),
            bcrypt_cost: v.uint("bcrypt-cost"),
            distributed_tracing: v.bool("experimental-enable-distributed-tracing").then(|| {
                crate::config::settings::TracingSettings {
                    address: v.get("experimental-distributed-tracing-address"),
                    service_name: v.get("experimental-distributed-tracing-service-name"),
                    instance_id: v.get("experimental-distributed-tracing-instance-id"),
                    sampling_rate: v.int("experimental-distributed-tracing-sampling-rate"),
                }
            }),
            proxy: v.get("proxy"),
            proxy_failure_wait: Duration::from_millis(v.uint("proxy-failure-wait")),
            proxy_refresh_interval: Duration::from_millis(v.uint("proxy-refresh-interval")),
            proxy_dial_timeout: Duration::from_millis(v.uint("proxy-dial-timeout")),
            proxy_read_timeout: Duration::from_millis(v.uint("proxy-read-timeout")),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_values(&Values::default())
    }
}

/// The configuration after defaults and validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw: Settings,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<Url>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<InitialMember>,
    pub listen_metrics_urls: Vec<Url>,
    /// `--listen-client-http-urls`: when set, the HTTP endpoints are served there and no longer
    /// on the client URLs.
    pub listen_client_http_urls: Vec<Url>,
    /// `--auto-compaction-*`: what the leader keeps (`None`: no auto-compaction).
    pub auto_compaction: Option<crate::config::settings::Retention>,
    /// `--auth-token` read, its keys loaded.
    pub auth_tokens: rustcd_auth::TokenOptions,
    /// `--enable-log-rotation` with its `--log-rotation-config-json`.
    pub log_rotation: Option<rustcd_process::log_rotate::RotationConfig>,
    /// What reading the settings found worth logging (etcd logs it once its logger is up).
    pub notes: Vec<Note>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
}

impl Config {
    /// Builds the configuration from read settings: refuses what rustcd cannot do yet, warns
    /// about what has no meaning for it, then validates.
    pub fn from_values(values: Values) -> Result<Config, StartError> {
        let mut notes = values.notes.clone();
        notes.extend(Self::check_support(&values)?);
        let mut cfg = Self::from_raw(Settings::from_values(&values))?;
        notes.append(&mut cfg.notes);
        cfg.notes = notes;
        Ok(cfg)
    }

    /// etcd's settings that rustcd does not act on: a value other than the default of a
    /// setting not built yet is an error naming it; one with no meaning here is a warning.
    pub fn check_support(values: &Values) -> Result<Vec<Note>, StartError> {
        let mut notes = Vec::new();
        for (f, v) in values.changed() {
            match f.support {
                Support::Yes => {}
                Support::NotYet(what) => {
                    return Err(StartError::Config(format!(
                        "--{}={v} is not supported yet by rustcd ({what})",
                        f.name
                    )));
                }
                Support::NoEffect(why) => notes.push(Note::warn(
                    format!("--{} has no effect in rustcd: {why}", f.name),
                    vec![("value", v.to_string())],
                )),
                Support::Ignored => {
                    notes.push(Note::warn(format!("flag \"-{}\" is no longer supported", f.name), vec![]))
                }
            }
        }
        Ok(notes)
    }

    pub fn from_raw(raw: Settings) -> Result<Config, StartError> {
        let data_dir = if raw.data_dir.is_empty() { format!("{}.etcd", raw.name) } else { raw.data_dir.clone() };
        let parse_urls = |s: &str, what: &str| -> Result<Vec<Url>, StartError> {
            split_list(s)
                .iter()
                .map(|u| Url::parse(u).map_err(|e| StartError::Config(format!("invalid {what} {u:?}: {e}"))))
                .collect()
        };
        let listen_client_urls = parse_urls(&raw.listen_client_urls, "listen-client-urls")?;
        let listen_peer_urls = parse_urls(&raw.listen_peer_urls, "listen-peer-urls")?;
        // A secure URL is never served without TLS: etcd's check, before anything starts.
        let t = &raw.tls;
        for (urls, info, auto, flags, what) in [
            (&listen_client_urls, &t.client, t.auto_tls, "--cert-file, --key-file", "client"),
            (&listen_peer_urls, &t.peer, t.peer_auto_tls, "--peer-cert-file, --peer-key-file", "peer"),
        ] {
            let secure = urls.iter().find(|u| u.scheme == "https" || u.scheme == "unixs");
            if let Some(u) = secure.filter(|_| (info.cert_file.is_empty() || info.key_file.is_empty()) && !auto) {
                return Err(StartError::Config(format!(
                    "TLS key/cert ({flags}) must be provided for {what} url {u} with HTTPS scheme"
                )));
            }
        }
        let advertise_client_urls = split_list(&raw.advertise_client_urls);
        let advertise_peer_urls = split_list(&raw.initial_advertise_peer_urls);
        let mut notes = Vec::new();
        let data_dir = PathBuf::from(data_dir);
        let fresh = !rustcd_schema::datadir::member_dir(&data_dir).exists();
        let bootstraps = [!raw.initial_cluster.is_empty(), !raw.discovery.is_empty(), !raw.discovery_srv.is_empty()];
        if fresh && bootstraps.iter().filter(|b| **b).count() > 1 {
            return Err(StartError::Config(
                "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"".into(),
            ));
        }
        // etcd's DNS SRV bootstrap, for a member that has no data yet.
        let srv_cluster = if raw.discovery_srv.is_empty() || !fresh {
            None
        } else if !raw.initial_cluster.is_empty() {
            return Err(StartError::Config(
                "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"".into(),
            ));
        } else {
            let (name, domain, suffix) = (&raw.name, &raw.discovery_srv, &raw.discovery_srv_name);
            Some(crate::config::discovery::initial_cluster(name, domain, suffix, &advertise_peer_urls, &mut notes)?)
        };
        let initial_cluster = if let Some(c) = &srv_cluster {
            parse_initial_cluster(c)?
        } else if raw.initial_cluster.is_empty() {
            vec![InitialMember { name: raw.name.clone(), peer_urls: advertise_peer_urls.clone() }]
        } else {
            parse_initial_cluster(&raw.initial_cluster)?
        };
        // A proxy is no member: its name need not be in the cluster.
        if raw.proxy == "off" && !initial_cluster.iter().any(|m| m.name == raw.name) {
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
        if raw.experimental_watch_progress_notify_interval.is_zero() {
            return Err(StartError::Config(
                "--experimental-watch-progress-notify-interval must be greater than 0".into(),
            ));
        }
        let listen_metrics_urls = parse_urls(&raw.listen_metrics_urls, "listen-metrics-urls")?;
        let listen_client_http_urls = parse_urls(&raw.listen_client_http_urls, "listen-client-http-urls")?;
        let auto_compaction =
            crate::config::settings::Retention::parse(&raw.auto_compaction_mode, &raw.auto_compaction_retention)
                .map_err(StartError::Config)?;
        if !(4..=31).contains(&raw.bcrypt_cost) {
            return Err(StartError::Config(format!("invalid bcrypt-cost {}", raw.bcrypt_cost)));
        }
        let auth_tokens = rustcd_auth::parse_token_options(&raw.auth_token, raw.auth_token_ttl)
            .map_err(|e| StartError::Config(e.to_string()))?;
        if let Some(t) = &raw.distributed_tracing {
            t.validate().map_err(StartError::Config)?;
        }
        let log_rotation = if raw.enable_log_rotation {
            rustcd_process::log_rotate::check_outputs(&raw.log_outputs).map_err(StartError::Config)?;
            let cfg = rustcd_process::log_rotate::RotationConfig::parse(&raw.log_rotation_config_json)
                .map_err(StartError::Config)?;
            if cfg.local_time {
                notes.push(Note::warn(
                    "log rotation names backups in UTC: \"localtime\" has no effect in rustcd",
                    vec![],
                ));
            }
            Some(cfg)
        } else {
            None
        };
        Ok(Config {
            auth_tokens,
            log_rotation,
            listen_metrics_urls,
            listen_client_http_urls,
            auto_compaction,
            notes,
            data_dir,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            advertise_peer_urls,
            initial_cluster,
            raw,
        })
    }
}

/// Parses `name=url,name=url2,...`; a name may appear with several URLs.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<InitialMember>, StartError> {
    rustcd_schema::cluster::parse_initial_cluster(s).map_err(StartError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_etcd() {
        let c = Config::from_raw(Settings::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls[0].port, 2379);
        assert_eq!(
            c.initial_cluster,
            vec![InitialMember { name: "default".into(), peer_urls: vec!["http://localhost:2380".into()] }]
        );
        assert_eq!((c.raw.max_request_bytes, c.raw.max_txn_ops), (1_572_864, 128));
    }

    #[test]
    fn yaml_keys_are_etcds() {
        let y = "name: etcd-1\ndata-dir: /tmp/x\ninitial-cluster: etcd-1=http://127.0.0.2:2390,etcd-2=http://127.0.0.2:2391\nlisten-client-urls: http://127.0.0.2:2369,http://localhost:2369\n";
        let c = Config::from_values(file::parse(y).unwrap()).unwrap();
        assert_eq!(c.initial_cluster.len(), 2);
        assert_eq!(c.listen_client_urls.len(), 2);
        assert_eq!(c.raw.heartbeat_interval, 100);
    }

    /// A value other than the default, of the flag's kind.
    fn other_value(f: &table::Flag) -> String {
        match f.kind {
            table::Kind::Bool => if f.default == "true" { "false" } else { "true" }.into(),
            table::Kind::Uint | table::Kind::U32 | table::Kind::Int => "7".into(),
            table::Kind::Duration => "7s".into(),
            table::Kind::Urls => "http://127.0.0.1:7".into(),
            table::Kind::List | table::Kind::Str => "x".into(),
            table::Kind::Choice(valid) => valid.iter().find(|v| **v != f.default).map_or("", |v| v).into(),
        }
    }

    /// Every etcd 3.5 flag, set to a value other than its default, is implemented (no note, or
    /// a start-up error of its own validation), warned about with a reason, or refused with a
    /// line naming it: never dropped.
    #[test]
    fn every_flag_is_implemented_warned_about_or_refused() {
        for f in table::FLAGS.iter().filter(|f| f.kind != table::Kind::Choice(&["zap"])) {
            let mut v = Values::default();
            v.set(f.name, &other_value(f)).unwrap_or_else(|e| panic!("--{}: {e}", f.name));
            let outcome = Config::check_support(&v);
            match f.support {
                Support::Yes => assert_eq!(outcome.map(|n| n.len()).ok(), Some(0), "--{} is implemented", f.name),
                Support::NoEffect(why) => {
                    let notes = outcome.unwrap_or_else(|e| panic!("--{}: {e}", f.name));
                    assert!(notes[0].warn && notes[0].msg.contains(f.name) && notes[0].msg.contains(why), "{notes:?}");
                }
                Support::Ignored => assert!(outcome.is_ok_and(|n| n[0].warn && n[0].msg.contains(f.name))),
                Support::NotYet(what) => {
                    let e = outcome.expect_err(f.name).to_string();
                    assert!(
                        e.contains(&format!("--{}", f.name)) && e.contains(what) && e.contains("not supported yet"),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn secure_urls_without_certificates_are_refused_never_served_plain() {
        for (flag, says) in [
            ("listen-client-urls", "TLS key/cert (--cert-file, --key-file) must be provided for client url"),
            ("listen-peer-urls", "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url"),
        ] {
            let mut v = Values::default();
            v.set(flag, "https://127.0.0.1:2379").expect("a valid URL");
            let e = Config::from_values(v).expect_err(flag).to_string();
            assert!(e.contains(says), "{e}");
        }
        let mut v = Values::default();
        v.set("listen-client-urls", "https://127.0.0.1:2379").expect("a valid URL");
        v.set("auto-tls", "true").expect("a bool");
        assert!(Config::from_values(v).is_ok(), "auto-TLS makes its own certificate");
        let v =
            file::parse("client-transport-security:\n  client-cert-auth: true\n  cert-file: /c.crt\n").expect("parse");
        let c = Config::from_values(v).expect("a TLS block is read");
        assert!(c.raw.tls.client.client_cert_auth && c.raw.tls.client.cert_file == "/c.crt");
    }

    /// scripts/etcd.conf.yml.sample holds every key etcd 3.5's config file knows, at the
    /// values of etcd's own sample: each is a known key, and the member it describes starts.
    #[test]
    fn the_sample_config_file_with_every_key_is_accepted() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/etcd.conf.yml.sample");
        let v = file::read(std::path::Path::new(path)).expect("read");
        assert!(!v.notes.iter().any(|n| n.msg.contains("unrecognized")), "{:?}", v.notes);
        let yaml_keys = std::fs::read_to_string(path).expect("text");
        for f in table::FLAGS.iter().filter(|f| f.section != table::Section::Hidden) {
            let key = match f.name {
                "experimental-snapshot-catchup-entries" => "experimental-snapshot-catch-up-entries",
                "cert-file" | "key-file" | "client-cert-file" | "client-key-file" | "client-cert-auth"
                | "trusted-ca-file" | "auto-tls" => continue, // in the TLS blocks
                n if n.starts_with("peer-") || n.starts_with("client-") || n.starts_with("socket-") => continue,
                "experimental-peer-skip-client-san-verification"
                | "raft-read-timeout"
                | "raft-write-timeout"
                | "experimental-backend-bbolt-freelist-type" => continue, // flags only
                n => n,
            };
            assert!(yaml_keys.contains(&format!("\n{key}:")), "the sample lacks {key}");
        }
        let c = Config::from_values(v).expect("the sample starts a member");
        assert!(c.auto_compaction.is_some());
    }

    /// docs/compatibility.md names every flag rustcd does not implement, with the table.
    #[test]
    fn the_compatibility_page_names_every_flag_not_implemented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compatibility.md"))
            .expect("docs/compatibility.md");
        for f in table::FLAGS.iter().filter(|f| matches!(f.support, Support::NoEffect(_) | Support::NotYet(_))) {
            assert!(doc.contains(f.name), "docs/compatibility.md does not name --{}", f.name);
        }
    }
}
