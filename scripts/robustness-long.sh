#!/usr/bin/env bash
# Robustness, long mode: the robustness scenarios for ROUNDS rounds each on 3 and 5 members
# (every round runs every fault type: kills, pauses, quorum loss, a partition of the leader, a
# delayed follower, a learner added/promoted/removed, and a crash at a failpoint, a different
# one each round), then every crash point again. Fails on any violation; the history of a
# failing run is written to the temp dir (its path is printed).
#
#   ./scripts/robustness-long.sh            # 8 rounds (~5 minutes per cluster size)
#   ROUNDS=20 ./scripts/robustness-long.sh
#   RUSTCD_FUZZ_SEED=1234 ./scripts/robustness-long.sh   # replay a fuzz run
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-8}"
cargo build --bins --features rustcd-server/failpoints
export RUSTCD_ROBUSTNESS_ROUNDS="$ROUNDS"
# The process-level fuzzers too, longer and from a fresh seed (printed, to replay a failure).
export RUSTCD_FUZZ_OPS="${RUSTCD_FUZZ_OPS:-20000}"
export RUSTCD_FUZZ_SEED="${RUSTCD_FUZZ_SEED:-$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ))}"
echo "robustness-long: $ROUNDS rounds, fuzz seed $RUSTCD_FUZZ_SEED, $RUSTCD_FUZZ_OPS operations"
cargo nextest run --workspace --features rustcd-server/failpoints --profile ci --no-capture \
    --test robustness -E 'test(/^(robustness|crash_points|fuzz_requests|fuzz_peer)::/)'
