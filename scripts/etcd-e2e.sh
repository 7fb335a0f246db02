#!/usr/bin/env bash
# Runs etcd 3.4.23's own end-to-end suite (Debian's golang-etcd-server-dev) against rustcd.
#
#   scripts/etcd-e2e.sh [PAIRING ...]
#
# PAIRING is one of
#   real    the real etcd and the real etcdctl (the suite's own pass count on this machine)
#   server  rustcd's etcd with the real etcdctl
#   ctl     the real etcd with rustcd's etcdctl
# (default: all three). Environment:
#   E2E_RUN   a regular expression: only tests whose names match (default: every v3 test)
#   E2E_JOBS  tests run side by side (default 2); each runs in its own loopback-only network
#             namespace (`unshare -n`), since the suite uses fixed ports
#   E2E_OUT   where logs and results go (default target/etcd-e2e)
#   E2E_TIMEOUT  per-test timeout (default 5m)
#   E2E_PROFILE  which build of rustcd's binaries: release (default; built here) or debug (as
#                the test command leaves them)
#   E2E_REQUIRE  when 1, exit 1 if any test that ran failed (the test command's fixed subset)
#
# Out of scope, never run: the v2 API tests (names with V2) and the release-upgrade tests.
# Prints one line per test and pairing, then the pass counts side by side; the table is kept in
# $E2E_OUT/summary.txt. Needs Go and golang-etcd-server-dev (installs the Debian packages when
# they are missing); where `unshare -n` is not allowed (not root), tests run one at a time.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${E2E_OUT:-$root/target/etcd-e2e}"
jobs="${E2E_JOBS:-2}"
run_re="${E2E_RUN:-.}"
timeout="${E2E_TIMEOUT:-5m}"
profile="${E2E_PROFILE:-release}"
pairings=("$@")
[ ${#pairings[@]} -gt 0 ] || pairings=(real server ctl)
src=/usr/share/gocode/src/go.etcd.io/etcd

need=()
command -v go >/dev/null || need+=(golang-go)
[ -d "$src/tests/e2e" ] || need+=(golang-etcd-server-dev)
[ -x /usr/bin/etcd ] || need+=(etcd-server)
[ -x /usr/bin/etcdctl ] || need+=(etcd-client)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
# The suite looks for ../../etcd.conf.yml.sample and ../../integration/fixtures from its working
# directory: give each pairing that layout, fresh (some tests leave data directories in it).
workdir() { # pairing -> its working layout
    local w="$out/work-$1"
    rm -rf "$w"
    mkdir -p "$w/tests/e2e" "$w/integration"
    ln -sfn "$src/integration/fixtures" "$w/integration/fixtures"
    cp "$root/scripts/etcd.conf.yml.sample" "$w/etcd.conf.yml.sample"
    echo "$w"
}

if [ ! -x "$out/e2e.test" ] || [ "$out/e2e.test" -ot "$src/tests/e2e/main_test.go" ]; then
    echo "building etcd's e2e suite (GOPATH mode, no network)"
    (cd "$src/tests/e2e" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS=-mod=mod \
        GOCACHE="$out/gocache" go test -c -o "$out/e2e.test" .)
fi
if [ "$profile" = release ]; then
    (cd "$root" && cargo build -q --release -p rustcd-server -p rustcd-ctl)
fi
# Each test gets a loopback-only network namespace of its own where the system allows one;
# elsewhere tests run one at a time on the machine's loopback (the suite's ports are fixed).
if unshare -n true 2>/dev/null; then
    netns="unshare -n"
else
    netns=""
    jobs=1
    echo "unshare -n is not allowed here: tests run one at a time"
fi

# Each binary the suite runs is a wrapper that records its arguments beside the test's log
# ($out/<pairing>/<test>.<binary>.log), so that a failure shows what it needed.
wrap() { # target path -> a wrapper at path
    rm -f "$2" # never write through a link left by an earlier run
    sed "s|@TARGET@|$1|; s|@NAME@|$(basename "$2")|" >"$2" <<'WRAPPER'
#!/bin/bash
log="$E2E_LOGDIR/$E2E_TEST.@NAME@.log"
echo "ARGS: $*" >>"$log"
exec @TARGET@ "$@"
WRAPPER
    chmod +x "$2"
}

bins() { # pairing -> a directory holding etcd and etcdctl
    local d="$out/bin-$1"
    mkdir -p "$d"
    case "$1" in
        real) wrap /usr/bin/etcd "$d/etcd"; wrap /usr/bin/etcdctl "$d/etcdctl" ;;
        server) wrap "$root/target/$profile/etcd" "$d/etcd"; wrap /usr/bin/etcdctl "$d/etcdctl" ;;
        ctl) wrap /usr/bin/etcd "$d/etcd"; wrap "$root/target/$profile/etcdctl" "$d/etcdctl" ;;
        *) echo "unknown pairing $1 (real, server or ctl)" >&2; exit 2 ;;
    esac
    echo "$d"
}

tests=$("$out/e2e.test" -test.list '.*' | grep -v 'V2' | grep -v '^TestReleaseUpgrade' | grep -E "$run_re" || true)
[ -n "$tests" ] || { echo "no test matches $run_re" >&2; exit 2; }

run_one() { # pairing bindir workdir test
    local p="$1" d="$2" work="$3" t="$4" log="$out/$1/$4.log" r
    (cd "$work/tests/e2e" && E2E_TEST="$t" E2E_LOGDIR="$out/$p" timeout --kill-after=10s 6m $netns sh -c \
        "{ [ -z '$netns' ] || ip link set lo up; } && exec '$out/e2e.test' -test.run '^$t\$' -test.timeout '$timeout' -test.v -bin-dir '$d' -cert-dir '$work/integration/fixtures'" \
        >"$log" 2>&1) || true
    if grep -q "^--- FAIL\|^FAIL\|^panic:" "$log"; then r=FAIL
    elif grep -q "^--- SKIP" "$log"; then r=SKIP
    elif grep -q "^--- PASS" "$log"; then r=PASS
    else r=FAIL; fi
    echo "$r$( [ "$r" = FAIL ] && cause "$out/$p" "$t" "$p")" >"$out/$p/$t.result"
    printf '%-6s %s %s\n' "$p" "$t" "$(cat "$out/$p/$t.result")"
}

cause() { # dir test pairing -> what the failing test needs that rustcd does not have yet, read
    # off the arguments the suite gave etcd and etcdctl (the open issue that builds it in brackets)
    local args
    args=$(cat "$1/$2".etcd*.log 2>/dev/null | grep '^ARGS: ' || true)
    if [ "$3" = ctl ]; then # the real etcd serves: only what rustcd's etcdctl lacks counts
        case "$2" in
            TestCtlV3Version) echo " (rustcd's etcdctl reports 3.5.13; the suite expects its own 3.4.23)"; return ;;
            TestIssue6361) echo " (starts one side's server on the other side's restored data dir)"; return ;;
        esac
        return
    fi
    case "$2" in
        TestV3Curl_MaxStreams_ReachLimit*) echo " (the gateway runs the services in-process: --max-concurrent-streams bounds gRPC connections, not it)"; return ;;
        TestV3Metrics*|TestV3CurlCipherSuitesValid) echo " (expects /metrics to name 3.4.23; rustcd reports 3.5.13)"; return ;;
        TestCtlV3Migrate) echo " (v2 data: out of scope)"; return ;;
        TestEtcdCorruptHash) echo " (edits bbolt's file: rustcd's backend is redb)"; return ;;
        TestIssue6361) echo " (starts one side's server on the other side's restored data dir)"; return ;;
        TestCtlV3Alarm) echo " (its 52 KiB quota is below a fresh redb file, 72 KiB)"; return ;;
    esac
    # TLS and auth are built: what is left unlabelled is a bug to look at
}

export -f run_one cause
export out timeout netns

for p in "${pairings[@]}"; do
    d=$(bins "$p")
    w=$(workdir "$p")
    rm -rf "${out:?}/$p"; mkdir -p "$out/$p"
    echo "$tests" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ "$p" "$d" "$w" {}
done

{
    printf '%-60s' test; for p in "${pairings[@]}"; do printf ' %-6s' "$p"; done; echo
    for t in $tests; do
        printf '%-60s' "$t"
        for p in "${pairings[@]}"; do
            printf ' %-6s' "$(cut -d' ' -f1 "$out/$p/$t.result" 2>/dev/null || echo '-')"
        done
        echo
    done
    for p in "${pairings[@]}"; do
        echo; echo "$p: failures needing what is not built yet"
        for t in $tests; do
            r=$(cat "$out/$p/$t.result" 2>/dev/null || true)
            case "$r" in "FAIL ("*) echo "  $t ${r#FAIL }" ;; esac
        done
    done
    echo
    for p in "${pairings[@]}"; do
        n=$(grep -l '^PASS' "$out/$p"/*.result 2>/dev/null | wc -l)
        echo "$p: $n of $(echo "$tests" | wc -w) passed"
    done
} >"$out/summary.txt"
tail -n "${#pairings[@]}" "$out/summary.txt"
echo "table: $out/summary.txt; logs: $out/<pairing>/<test>.log"
if [ "${E2E_REQUIRE:-0}" = 1 ] && grep -lq '^FAIL' "$out"/*/*.result 2>/dev/null; then
    for p in "${pairings[@]}"; do grep -l '^FAIL' "$out/$p"/*.result 2>/dev/null | sed "s|.*/|$p: failed: |; s|.result||"; done
    exit 1
fi
