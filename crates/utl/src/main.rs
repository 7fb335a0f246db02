//! `etcdutl`: etcd 3.5's offline utility for etcd data and snapshot files.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rustcd_utl::UtlError;
use rustcd_utl::snapshot::RestoreArgs;

#[derive(Parser, Debug)]
#[command(name = "etcdutl", about = "A simple command line client for etcd3 offline utilities.")]
struct Cli {
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(short = 'w', long = "write-out", default_value = "simple", global = true)]
    write_out: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Defragments the storage of the etcd
    Defrag {
        /// Required. Defragments a data directory not in use by etcd.
        #[arg(long = "data-dir", required = true)]
        data_dir: String,
    },
    /// [legacy] offline backup of etcd directory
    Backup {
        /// Path to the etcd data dir
        #[arg(long = "data-dir", required = true)]
        data_dir: String,
        /// Path to the etcd wal dir
        #[arg(long = "wal-dir", default_value = "")]
        wal_dir: String,
        /// Path to the backup dir
        #[arg(long = "backup-dir", required = true)]
        backup_dir: String,
        /// Path to the backup wal dir
        #[arg(long = "backup-wal-dir", default_value = "")]
        backup_wal_dir: String,
        /// Backup v3 backend data
        #[arg(long = "with-v3", default_value_t = true, action = clap::ArgAction::Set)]
        with_v3: bool,
    },
    /// Prints the version of etcdutl
    Version,
}

#[derive(Subcommand, Debug)]
enum SnapshotCmd {
    /// Gets backend snapshot status of a given file
    Status { args: Vec<String> },
    /// Restores an etcd member snapshot to an etcd directory
    Restore(RestoreArgs),
}

fn run(cli: Cli) -> Result<(), UtlError> {
    match cli.command {
        Command::Snapshot(SnapshotCmd::Status { args }) => {
            print!("{}", rustcd_utl::snapshot::status(&args, &cli.write_out)?);
            Ok(())
        }
        Command::Snapshot(SnapshotCmd::Restore(a)) => rustcd_utl::snapshot::restore(&a),
        Command::Defrag { data_dir } => rustcd_utl::datadir::defrag(&data_dir),
        Command::Backup { data_dir, wal_dir, backup_dir, backup_wal_dir, with_v3 } => {
            if !wal_dir.is_empty() {
                return Err(UtlError::bad_args(
                    "--wal-dir: rustcd keeps the raft log under the data dir; back up the data dir",
                ));
            }
            if !with_v3 {
                return Err(UtlError::bad_args("--with-v3=false: rustcd has no v2 store to back up alone"));
            }
            rustcd_utl::datadir::backup(&data_dir, &backup_dir, &backup_wal_dir)
        }
        Command::Version => {
            println!("etcdutl version: {}", rustcd_api::ETCD_VERSION);
            println!("API version: {}", rustcd_api::etcd_api_version());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // etcd's tools log as zap does: JSON lines on stderr.
    rustcd_utl::log_to_stderr();
    if let Err(e) = rustcd_process::failpoints::setup() {
        eprintln!("Error: {e}");
        return ExitCode::from(1);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 128 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", e.msg);
            ExitCode::from(e.code)
        }
    }
}
