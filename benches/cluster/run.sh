#!/usr/bin/env bash
# Cluster benchmark: three `tollgate serve` processes on one PostgreSQL schema (the local server
# by default), once per `store.quota_mode`: overshoot of a shared daily cost limit and of a
# partner balance in sync and in lease mode, the usage sync transaction's cost in each, key-change
# propagation p50/p99, and one instance's throughput on the paid route on PostgreSQL (lease mode)
# against SQLite. Measures, never asserts; prints one line per figure (copied into the README);
# instance logs (level warn), if any, go to stderr.
#
#   bash benches/cluster/run.sh            # POSTGRES=postgres://... ROUNDS=50 SECONDS_PER_RUN=5
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
POSTGRES="${POSTGRES:-${TOLLGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}}"
cargo build --release --bin tollgate --example cluster_bench
taskset -c 0 target/release/examples/cluster_bench --bin target/release/tollgate \
    --postgres "$POSTGRES" --rounds "${ROUNDS:-50}" --seconds "${SECONDS_PER_RUN:-5}"
