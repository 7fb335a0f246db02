#!/usr/bin/env bash
# Runs the whole rustcd test suite, as on a fresh machine: installs the real etcd tools the
# compatibility tests compare against when missing, builds the binaries the process-level
# tests start, then runs every test with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/etcdctl ] || [ ! -x /usr/bin/etcd ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  $SUDO apt-get install -y etcd-client etcd-server
  # Debian's package may start a system etcd on the default ports; tests pick their own ports.
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

cargo build --bins --features rustcd-server/failpoints
cargo nextest run --workspace --features rustcd-server/failpoints --profile ci "$@"
