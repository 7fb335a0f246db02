//! Every flag etcd 3.5 knows, with its kind, default, help text and what rustcd does with it.
//! The table is the single source of `etcd --help`, of the flag, `ETCD_*` and config-file
//! parsers, and of the start-up check that nothing is silently ignored.

/// The type of a flag's value, as etcd's Go flag set declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    /// An unsigned integer (Go's `uint`/`uint64`).
    Uint,
    /// A 32-bit unsigned integer (`--max-concurrent-streams`).
    U32,
    /// A signed integer (`int`/`int64`).
    Int,
    /// A Go duration (`5s`, `1m30s`; in the config file a number of nanoseconds).
    Duration,
    /// A comma-separated list of URLs.
    Urls,
    /// A comma-separated list of strings.
    List,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
}

/// What rustcd does with a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// It does what etcd does.
    Yes,
    /// Accepted; a value other than the default has no meaning for rustcd and is logged as a
    /// warning with the reason.
    NoEffect(&'static str),
    /// Not built yet: a value other than the default refuses to start, naming what is missing.
    NotYet(&'static str),
    /// One of etcd's long-gone flags that etcd itself accepts and ignores with a warning.
    Ignored,
}

/// One flag.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    pub kind: Kind,
    /// The default as a value of `kind` (what an unset flag means).
    pub default: &'static str,
    pub help: &'static str,
    pub section: Section,
    pub support: Support,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Member,
    Clustering,
    Security,
    Auth,
    Logging,
    Profiling,
    Experimental,
    Unsafe,
    Proxy,
    Hidden,
}

impl Section {
    pub fn title(self) -> &'static str {
        match self {
            Section::Member => "Member",
            Section::Clustering => "Clustering",
            Section::Security => "Security",
            Section::Auth => "Auth",
            Section::Logging => "Logging",
            Section::Profiling => "Profiling",
            Section::Experimental => "Experimental distributed tracing and features",
            Section::Unsafe => "Unsafe feature",
            Section::Proxy => "v2 Proxy (to be deprecated in v3.6)",
            Section::Hidden => "",
        }
    }
}

use Kind::*;
use Section::*;
use Support::*;

const TLS: Support = Yes;
const PEER_TLS: Support = Yes;
const AUTH: Support = Yes;
const V2: Support = NoEffect("rustcd serves the v3 API only; the v2 API and its proxy are gone from etcd 3.6");
const BBOLT: Support = NoEffect("rustcd's backend is not bbolt");

const fn f(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    section: Section,
    support: Support,
    help: &'static str,
) -> Flag {
    Flag { name, kind, default, help, section, support }
}

/// etcd 3.5's flags, in the order of its help text.
#[rustfmt::skip]
pub const FLAGS: &[Flag] = &[
    // Member
    f("name", Str, "default", Member, Yes, "Human-readable name for this member."),
    f("data-dir", Str, "", Member, Yes, "Path to the data directory."),
    f("wal-dir", Str, "", Member, Yes, "Path to the dedicated wal directory."),
    f("snapshot-count", Uint, "100000", Member, Yes, "Number of committed transactions to trigger a snapshot to disk."),
    f("heartbeat-interval", Uint, "100", Member, Yes, "Time (in milliseconds) of a heartbeat interval."),
    f("election-timeout", Uint, "1000", Member, Yes, "Time (in milliseconds) for an election to timeout."),
    f("initial-election-tick-advance", Bool, "true", Member, Yes, "Whether to fast-forward initial election ticks on boot for faster election."),
    f("listen-peer-urls", Urls, "http://localhost:2380", Member, Yes, "List of URLs to listen on for peer traffic."),
    f("listen-client-urls", Urls, "http://localhost:2379", Member, Yes, "List of URLs to listen on for client grpc traffic and http as long as --listen-client-http-urls is not specified."),
    f("listen-client-http-urls", Urls, "", Member, Yes, "List of URLs to listen on for http only client traffic. Enabling this flag removes http services from --listen-client-urls."),
    f("max-snapshots", Uint, "5", Member, NoEffect("rustcd keeps no snapshot files: a snapshot is its backend, and raft-engine purges the raft log itself"), "Maximum number of snapshot files to retain (0 is unlimited)."),
    f("max-wals", Uint, "5", Member, NoEffect("rustcd keeps no WAL files: raft-engine purges the raft log once it is applied and snapshotted"), "Maximum number of wal files to retain (0 is unlimited)."),
    f("quota-backend-bytes", Int, "0", Member, Yes, "Sets the maximum size (in bytes) that the etcd backend database may consume. Exceeding this triggers an alarm and puts etcd in read-only mode. Set to 0 to use the default 2GiB limit."),
    f("backend-bbolt-freelist-type", Str, "map", Member, BBOLT, "BackendFreelistType specifies the type of freelist that boltdb backend uses(array and map are supported types)."),
    f("backend-batch-interval", Duration, "0s", Member, NoEffect("rustcd commits the backend once per applied batch of raft entries"), "BackendBatchInterval is the maximum time before commit the backend transaction."),
    f("backend-batch-limit", Int, "0", Member, NoEffect("rustcd commits the backend once per applied batch of raft entries"), "BackendBatchLimit is the maximum operations before commit the backend transaction."),
    f("max-txn-ops", Uint, "128", Member, Yes, "Maximum number of operations permitted in a transaction."),
    f("max-request-bytes", Uint, "1572864", Member, Yes, "Maximum client request size in bytes the server will accept."),
    f("max-concurrent-streams", U32, "4294967295", Member, Yes, "Maximum concurrent streams that each client can open at a time."),
    f("grpc-keepalive-min-time", Duration, "5s", Member, NoEffect("rustcd answers every client ping and never closes a connection for pinging too often"), "Minimum duration interval that a client should wait before pinging server."),
    f("grpc-keepalive-interval", Duration, "2h0m0s", Member, Yes, "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable)."),
    f("grpc-keepalive-timeout", Duration, "20s", Member, Yes, "Additional duration of wait before closing a non-responsive connection (0 to disable)."),
    f("socket-reuse-port", Bool, "false", Member, Yes, "Enable to set socket option SO_REUSEPORT on listeners allowing rebinding of a port already in use."),
    f("socket-reuse-address", Bool, "false", Member, Yes, "Enable to set socket option SO_REUSEADDR on listeners allowing binding to an address in `TIME_WAIT` state."),
    f("raft-read-timeout", Duration, "5s", Member, NoEffect("rustcd's peer connections are gRPC streams with their own keepalive"), "Read timeout set on each rafthttp connection"),
    f("raft-write-timeout", Duration, "5s", Member, NoEffect("rustcd's peer connections are gRPC streams with their own keepalive"), "Write timeout set on each rafthttp connection"),
    // Clustering
    f("initial-advertise-peer-urls", Urls, "http://localhost:2380", Clustering, Yes, "List of this member's peer URLs to advertise to the rest of the cluster."),
    f("initial-cluster", Str, "", Clustering, Yes, "Initial cluster configuration for bootstrapping."),
    f("initial-cluster-state", Choice(&["new", "existing"]), "new", Clustering, Yes, "Initial cluster state ('new' or 'existing')."),
    f("initial-cluster-token", Str, "etcd-cluster", Clustering, Yes, "Initial cluster token for the etcd cluster during bootstrap."),
    f("advertise-client-urls", Urls, "http://localhost:2379", Clustering, Yes, "List of this member's client URLs to advertise to the public."),
    f("discovery", Str, "", Clustering, Yes, "Discovery URL used to bootstrap the cluster."),
    f("discovery-fallback", Choice(&["proxy", "exit"]), "proxy", Clustering, Yes, "Expected behavior ('exit' or 'proxy') when discovery services fails."),
    f("discovery-proxy", Str, "", Clustering, Yes, "HTTP proxy to use for traffic to discovery service."),
    f("discovery-srv", Str, "", Clustering, Yes, "DNS srv domain used to bootstrap the cluster."),
    f("discovery-srv-name", Str, "", Clustering, Yes, "Suffix to the dns srv name queried when bootstrapping."),
    f("strict-reconfig-check", Bool, "true", Clustering, Yes, "Reject reconfiguration requests that would cause quorum loss."),
    f("pre-vote", Bool, "true", Clustering, Yes, "Enable the raft Pre-Vote algorithm to prevent disruption when a node that has been partitioned away rejoins the cluster."),
    f("auto-compaction-retention", Str, "0", Clustering, Yes, "Auto compaction retention length. 0 means disable auto compaction."),
    f("auto-compaction-mode", Choice(&["periodic", "revision"]), "periodic", Clustering, Yes, "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention."),
    f("enable-v2", Bool, "false", Clustering, V2, "Accept etcd V2 client requests. Deprecated and to be decommissioned in v3.6."),
    f("experimental-enable-v2v3", Str, "", Clustering, V2, "Serve v2 requests through the v3 backend under a given prefix. Deprecated and to be decommissioned in v3.6."),
    f("v2-deprecation", Choice(&["not-yet", "write-only", "write-only-drop-data", "gone"]), "not-yet", Clustering, V2, "Phase of v2store deprecation. Allows to opt-in for higher compatibility mode."),
    // Security
    f("cert-file", Str, "", Security, TLS, "Path to the client server TLS cert file."),
    f("key-file", Str, "", Security, TLS, "Path to the client server TLS key file."),
    f("client-cert-file", Str, "", Security, TLS, "Path to an explicit peer client TLS cert file otherwise cert file will be used when client auth is required."),
    f("client-key-file", Str, "", Security, TLS, "Path to an explicit peer client TLS key file otherwise key file will be used when client auth is required."),
    f("client-cert-auth", Bool, "false", Security, TLS, "Enable client cert authentication."),
    f("client-crl-file", Str, "", Security, TLS, "Path to the client certificate revocation list file."),
    f("client-cert-allowed-hostname", List, "", Security, TLS, "Comma-separated list of SAN hostnames for client cert authentication."),
    f("trusted-ca-file", Str, "", Security, TLS, "Path to the client server TLS trusted CA cert file."),
    f("auto-tls", Bool, "false", Security, TLS, "Client TLS using generated certificates."),
    f("peer-cert-file", Str, "", Security, PEER_TLS, "Path to the peer server TLS cert file."),
    f("peer-key-file", Str, "", Security, PEER_TLS, "Path to the peer server TLS key file."),
    f("peer-client-cert-file", Str, "", Security, PEER_TLS, "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required."),
    f("peer-client-key-file", Str, "", Security, PEER_TLS, "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required."),
    f("peer-client-cert-auth", Bool, "false", Security, PEER_TLS, "Enable peer client cert authentication."),
    f("peer-trusted-ca-file", Str, "", Security, PEER_TLS, "Path to the peer server TLS trusted CA file."),
    f("peer-cert-allowed-cn", List, "", Security, PEER_TLS, "Required CN for client certs connecting to the peer endpoint."),
    f("peer-cert-allowed-hostname", List, "", Security, PEER_TLS, "Allowed TLS hostname for inter peer authentication."),
    f("peer-auto-tls", Bool, "false", Security, PEER_TLS, "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided."),
    f("self-signed-cert-validity", Uint, "1", Security, TLS, "The validity period of the client and peer certificates that are automatically generated by etcd when you specify ClientAutoTLS and PeerAutoTLS, the unit is year, and the default is 1."),
    f("peer-crl-file", Str, "", Security, PEER_TLS, "Path to the peer certificate revocation list file."),
    f("cipher-suites", List, "", Security, TLS, "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go)."),
    f("cors", List, "*", Security, Yes, "Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, (empty or * means allow all)."),
    f("host-whitelist", List, "*", Security, Yes, "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all)."),
    f("tls-min-version", Choice(&["TLS1.2", "TLS1.3"]), "TLS1.2", Security, TLS, "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3."),
    f("tls-max-version", Choice(&["", "TLS1.2", "TLS1.3"]), "", Security, TLS, "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty will be auto-populated by Go)."),
    f("experimental-peer-skip-client-san-verification", Bool, "false", Security, Yes, "Skip verification of SAN field in client certificate for peer connections."),
    // Auth
    f("auth-token", Str, "simple", Auth, AUTH, "Specify a v3 authentication token type and token specific options, especially for JWT. Its format is \"type,var1=val1,var2=val2,...\". Possible type is 'simple' or 'jwt'. Possible variables are 'sign-method' for specifying a sign method of jwt (its possible values are 'ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', or 'PS512'), 'pub-key' for specifying a path to a public key for verifying jwt, 'priv-key' for specifying a path to a private key for signing jwt, and 'ttl' for specifying TTL of jwt tokens."),
    f("bcrypt-cost", Uint, "10", Auth, AUTH, "Specify the cost/strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31."),
    f("auth-token-ttl", Uint, "300", Auth, AUTH, "Time (in seconds) of the auth-token-ttl."),
    // Profiling and monitoring
    f("enable-pprof", Bool, "false", Profiling, NoEffect("rustcd is not a Go program: there is no Go runtime to profile"), "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\""),
    f("metrics", Choice(&["basic", "extensive"]), "basic", Profiling, Yes, "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics."),
    f("listen-metrics-urls", Urls, "", Profiling, Yes, "List of URLs to listen on for the metrics and health endpoints."),
    // Logging
    f("logger", Choice(&["zap"]), "zap", Logging, Yes, "Currently only supports 'zap' for structured logging."),
    f("log-outputs", List, "default", Logging, Yes, "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets."),
    f("log-level", Choice(&["debug", "info", "warn", "error", "panic", "fatal"]), "info", Logging, Yes, "Configures log level. Only supports debug, info, warn, error, panic, or fatal."),
    f("enable-log-rotation", Bool, "false", Logging, Yes, "Enable log rotation of a single log-outputs file target."),
    f("log-rotation-config-json", Str, "{\"maxsize\": 100, \"maxage\": 0, \"maxbackups\": 0, \"localtime\": false, \"compress\": false}", Logging, Yes, "Configures log rotation if enabled with a JSON logger config. MaxSize(MB), MaxAge(days,0=no limit), MaxBackups(0=no limit), LocalTime(use computers local time), Compress(gzip)"),
    // Experimental
    f("experimental-enable-distributed-tracing", Bool, "false", Experimental, Yes, "Enable experimental distributed tracing."),
    f("experimental-distributed-tracing-address", Str, "localhost:4317", Experimental, Yes, "Distributed tracing collector address."),
    f("experimental-distributed-tracing-service-name", Str, "etcd", Experimental, Yes, "Distributed tracing service name, must be same across all etcd instances."),
    f("experimental-distributed-tracing-instance-id", Str, "", Experimental, Yes, "Distributed tracing instance ID, must be unique per each etcd instance."),
    f("experimental-distributed-tracing-sampling-rate", Int, "0", Experimental, Yes, "Number of samples to collect per million spans for distributed tracing."),
    f("experimental-initial-corrupt-check", Bool, "false", Experimental, Yes, "Enable to check data corruption before serving any client/peer traffic."),
    f("experimental-corrupt-check-time", Duration, "0s", Experimental, Yes, "Duration of time between cluster corruption check passes."),
    f("experimental-compact-hash-check-enabled", Bool, "false", Experimental, Yes, "Enable leader to periodically check followers compaction hashes."),
    f("experimental-compact-hash-check-time", Duration, "1m0s", Experimental, Yes, "Duration of time between leader checks followers compaction hashes."),
    f("experimental-enable-lease-checkpoint", Bool, "false", Experimental, Yes, "Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change."),
    f("experimental-enable-lease-checkpoint-persist", Bool, "false", Experimental, Yes, "Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases. Always enabled in v3.6. Should be used to ensure smooth upgrade from v3.5 clusters with this feature enabled. Requires experimental-enable-lease-checkpoint to be enabled."),
    f("experimental-compaction-batch-limit", Int, "1000", Experimental, NoEffect("rustcd compacts in one backend transaction per compaction"), "Sets the maximum revisions deleted in each compaction batch."),
    f("experimental-compaction-sleep-interval", Duration, "10ms", Experimental, NoEffect("rustcd compacts in one backend transaction per compaction"), "Sets the sleep interval between each compaction batch."),
    f("experimental-watch-progress-notify-interval", Duration, "10m0s", Experimental, Yes, "Duration of periodical watch progress notification."),
    f("experimental-downgrade-check-time", Duration, "5s", Experimental, NoEffect("cluster downgrades are not supported"), "Duration of time between two downgrade status checks."),
    f("experimental-warning-apply-duration", Duration, "100ms", Experimental, Yes, "Time duration after which a warning is generated if request takes more time."),
    f("experimental-memory-mlock", Bool, "false", Experimental, NoEffect("rustcd does not lock its backend's pages in memory"), "Enable to enforce etcd pages (in particular bbolt) to stay in RAM."),
    f("experimental-txn-mode-write-with-shared-buffer", Bool, "true", Experimental, NoEffect("rustcd's write transactions read their own writes without a shared buffer"), "Enable the write transaction to use a shared buffer in its readonly check operations."),
    f("experimental-stop-grpc-service-on-defrag", Bool, "false", Experimental, NoEffect("rustcd's defragmentation does not stop serving"), "Enable etcd gRPC service to stop serving client requests on defragmentation."),
    f("experimental-bootstrap-defrag-threshold-megabytes", Uint, "0", Experimental, NoEffect("rustcd does not defragment at start-up"), "Enable the defrag during etcd server bootstrap on condition that it will free at least the provided threshold of disk space. Needs to be set to non-zero value to take effect."),
    f("experimental-snapshot-catchup-entries", Uint, "5000", Experimental, Yes, "Number of entries for a slow follower to catch up after compacting the raft storage entries."),
    f("experimental-backend-bbolt-freelist-type", Str, "map", Experimental, BBOLT, "ExperimentalBackendFreelistType specifies the type of freelist that boltdb backend uses(array and map are supported types). (etcd 3.4's name)"),
    // Unsafe
    f("force-new-cluster", Bool, "false", Unsafe, Yes, "Force to create a new one member cluster."),
    f("unsafe-no-fsync", Bool, "false", Unsafe, Yes, "Disables fsync, unsafe, will cause data loss."),
    // v2 proxy
    f("proxy", Choice(&["off", "readonly", "on"]), "off", Proxy, Yes, "Proxy mode setting ('off', 'readonly' or 'on')."),
    f("proxy-failure-wait", Uint, "5000", Proxy, Yes, "Time (in milliseconds) an endpoint will be held in a failed state."),
    f("proxy-refresh-interval", Uint, "30000", Proxy, Yes, "Time (in milliseconds) of the endpoints refresh interval."),
    f("proxy-dial-timeout", Uint, "1000", Proxy, Yes, "Time (in milliseconds) for a dial to timeout."),
    f("proxy-write-timeout", Uint, "5000", Proxy, NoEffect("rustcd's HTTP proxy bounds a whole forwarded request by --proxy-read-timeout"), "Time (in milliseconds) for a write to timeout."),
    f("proxy-read-timeout", Uint, "0", Proxy, Yes, "Time (in milliseconds) for a read to timeout."),
    // etcd 3.4's gateway flag, on by default
    f("enable-grpc-gateway", Bool, "true", Hidden, Yes, "Enable GRPC gateway."),
    // rustcd's own: etcd has no dashboard
    f("enable-dashboard", Bool, "false", Hidden, Yes, "Serve a live dashboard of the cluster at /dashboard on the client URLs."),
    // etcd's long-gone flags, accepted and ignored as etcd does
    f("cluster-active-size", Bool, "false", Hidden, Ignored, ""),
    f("cluster-remove-delay", Bool, "false", Hidden, Ignored, ""),
    f("cluster-sync-interval", Bool, "false", Hidden, Ignored, ""),
    f("config", Bool, "false", Hidden, Ignored, ""),
    f("force", Bool, "false", Hidden, Ignored, ""),
    f("max-result-buffer", Bool, "false", Hidden, Ignored, ""),
    f("max-retry-attempts", Bool, "false", Hidden, Ignored, ""),
    f("peer-heartbeat-interval", Bool, "false", Hidden, Ignored, ""),
    f("peer-election-timeout", Bool, "false", Hidden, Ignored, ""),
    f("retry-interval", Bool, "false", Hidden, Ignored, ""),
    f("snapshot", Bool, "false", Hidden, Ignored, ""),
    f("v", Bool, "false", Hidden, Ignored, ""),
    f("vv", Bool, "false", Hidden, Ignored, ""),
    f("test.coverprofile", Bool, "false", Hidden, Ignored, ""),
    f("test.outputdir", Bool, "false", Hidden, Ignored, ""),
];

/// The flag called `name`.
pub fn flag(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_defaults_parse() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(FLAGS[..i].iter().all(|g| g.name != f.name), "{} twice", f.name);
            assert!(super::super::parse::normalize(f, f.default).is_ok(), "default of {} does not parse", f.name);
        }
    }
}
