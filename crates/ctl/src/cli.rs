//! etcdctl's command line: global flags (and their `ETCDCTL_*` variables) and the command tree,
//! with etcd's names, usage lines and help texts so that `--help` lists what etcd's lists.

use clap::{ArgAction, Parser, Subcommand};

use crate::{admin, auth, check, cluster, help, kv, lease, mirror, session, watch};

const PUT_DESCRIPTION: &str = "Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.";

/// A simple command line client for etcd3.
#[derive(Parser, Debug)]
#[command(
    name = "etcdctl",
    about = "A simple command line client for etcd3.",
    disable_version_flag = true,
    disable_help_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// gRPC endpoints
    #[arg(long, global = true, env = "ETCDCTL_ENDPOINTS", default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(short = 'w', long = "write-out", global = true, env = "ETCDCTL_WRITE_OUT", default_value = "simple")]
    pub write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX")]
    pub hex: bool,
    /// dial timeout for client connections
    #[arg(long = "dial-timeout", global = true, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s")]
    pub dial_timeout: String,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long = "command-timeout", global = true, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s")]
    pub command_timeout: String,
    /// keepalive time for client connections
    #[arg(long = "keepalive-time", global = true, default_value = "2s")]
    pub keepalive_time: String,
    /// keepalive timeout for client connections
    #[arg(long = "keepalive-timeout", global = true, default_value = "6s")]
    pub keepalive_timeout: String,
    /// enable client-side debug logging
    #[arg(long, global = true)]
    pub debug: bool,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER", default_value = "")]
    pub user: String,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD", default_value = "")]
    pub password: String,
    /// disable transport security for client connections
    #[arg(long = "insecure-transport", global = true, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure_transport: bool,
    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long = "insecure-skip-tls-verify", global = true)]
    pub insecure_skip_tls_verify: bool,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true, env = "ETCDCTL_CACERT", default_value = "")]
    pub cacert: String,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true, env = "ETCDCTL_CERT", default_value = "")]
    pub cert: String,
    /// identify secure client using this TLS key file
    #[arg(long, global = true, env = "ETCDCTL_KEY", default_value = "")]
    pub key: String,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long = "discovery-srv", global = true, default_value = "")]
    pub discovery_srv: String,
    /// service name to query when using DNS discovery
    #[arg(long = "discovery-srv-name", global = true, default_value = "")]
    pub discovery_srv_name: String,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long = "insecure-discovery", global = true, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure_discovery: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Gets the key or a range of keys
    Get(kv::GetArgs),
    /// Puts the given key into the store
    #[command(
        long_about = PUT_DESCRIPTION
    )]
    Put(kv::PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(kv::DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(kv::TxnArgs),
    /// Compacts the event history in etcd
    Compaction(kv::CompactionArgs),
    /// Watches events stream on keys or prefixes
    Watch(watch::WatchArgs),
    /// Lease related commands
    #[command(subcommand)]
    Lease(lease::LeaseCmd),
    /// Membership related commands
    #[command(subcommand)]
    Member(cluster::MemberCmd),
    /// Endpoint related commands
    Endpoint(cluster::EndpointArgs),
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(admin::AlarmCmd),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(admin::DefragArgs),
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(admin::SnapshotCmd),
    /// Enable or disable authentication
    #[command(subcommand)]
    Auth(auth::AuthCmd),
    /// User related commands
    #[command(subcommand)]
    User(auth::UserCmd),
    /// Role related commands
    #[command(subcommand)]
    Role(auth::RoleCmd),
    /// Acquires a named lock
    Lock(session::LockArgs),
    /// Observes and participates in leader election
    Elect(session::ElectArgs),
    #[command(about = "Transfers leadership to another etcd cluster member.")]
    MoveLeader { args: Vec<String> },
    /// Check commands
    #[command(subcommand)]
    Check(check::CheckCmd),
    /// Makes a mirror at the destination etcd cluster
    MakeMirror(mirror::MirrorArgs),
    /// Generate the autocompletion script for the specified shell
    #[command(subcommand)]
    Completion(help::CompletionCmd),
    #[command(
        about = "Help about any command",
        long_about = "Help provides help for any command in the application.
Simply type etcdctl help [path to command] for full details."
    )]
    Help { args: Vec<String> },
    /// Prints the version of etcdctl
    Version,
}
