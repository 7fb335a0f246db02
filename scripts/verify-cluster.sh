#!/usr/bin/env bash
# Starts a three-member cluster on loopback (rustcd, or the real etcd with `etcd`), its peer
# traffic through rustcd-bench's fault proxies, and runs `rustcd-bench verify` against it with
# the faults given; stops the members and removes their data when done.
#
#   scripts/verify-cluster.sh [rustcd|etcd] [verify flags...]
#   scripts/verify-cluster.sh etcd --duration 60s --faults kill-leader,stop-follower
#
# ETCD_BIN, BENCH_BIN: the binaries (default: target/release's, /usr/bin/etcd for `etcd`).
# MEMBERS (default 3), CLIENTS (default 6). The members inherit the environment (FAILPOINTS).
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=${1:-rustcd}
shift || true
case "$SERVER" in
  rustcd) ETCD_BIN=${ETCD_BIN:-target/release/etcd} ;;
  etcd) ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd} ;;
  *) echo "usage: $0 [rustcd|etcd] [verify flags...]" >&2; exit 2 ;;
esac
BENCH_BIN=${BENCH_BIN:-target/release/rustcd-bench}
MEMBERS=${MEMBERS:-3}
CLIENTS=${CLIENTS:-6}
ETCD_BIN=$(realpath "$ETCD_BIN")
BENCH_BIN=$(realpath "$BENCH_BIN")

DIR=$(mktemp -d /tmp/rustcd-verify-XXXXXX)
cleanup() {
  for f in "$DIR"/pid-*; do
    [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$DIR"
}
trap cleanup EXIT

# Free loopback ports: client, peer (the member listens), proxy (the member advertises).
read -r -a PORTS <<<"$(python3 -c "
import socket
socks = [socket.socket() for _ in range(3 * $MEMBERS)]
for s in socks: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in socks))
")"
CLUSTER=""
for i in $(seq 0 $((MEMBERS - 1))); do
  CLUSTER="$CLUSTER${CLUSTER:+,}m$i=http://127.0.0.1:${PORTS[$((3 * i + 2))]}"
done
ENDPOINTS="" PROXIES=""
for i in $(seq 0 $((MEMBERS - 1))); do
  client=${PORTS[$((3 * i))]} peer=${PORTS[$((3 * i + 1))]} proxy=${PORTS[$((3 * i + 2))]}
  # start-i.sh starts member i in the background (first start and every restart).
  cat >"$DIR/start-$i.sh" <<EOF
nohup "$ETCD_BIN" --name m$i --data-dir "$DIR/m$i.etcd" \
  --listen-client-urls http://127.0.0.1:$client --advertise-client-urls http://127.0.0.1:$client \
  --listen-peer-urls http://127.0.0.1:$peer --initial-advertise-peer-urls http://127.0.0.1:$proxy \
  --initial-cluster $CLUSTER --initial-cluster-state new --initial-cluster-token verify \
  >>"$DIR/m$i.log" 2>&1 &
echo \$! >"$DIR/pid-$i"
EOF
  ENDPOINTS="$ENDPOINTS${ENDPOINTS:+,}127.0.0.1:$client"
  PROXIES="$PROXIES${PROXIES:+,}$proxy:$peer"
done
for i in $(seq 0 $((MEMBERS - 1))); do sh "$DIR/start-$i.sh"; done

set +e
"$BENCH_BIN" --endpoints "$ENDPOINTS" --clients "$CLIENTS" verify \
  --peer-proxies "$PROXIES" --restart-cmd "sh $DIR/start-{i}.sh" "$@"
code=$?
set -e
exit $code
