#!/usr/bin/env bash
# Cluster benchmark: three `tollgate serve` processes on one PostgreSQL schema (the local server
# by default): key-change propagation p50/p99, the usage sync transaction's cost, overshoot of a
# shared daily cost limit in sync mode, and one instance's throughput on PostgreSQL against
# SQLite. Measures, never asserts; prints one line per figure (copied into the README).
#
#   bash benches/cluster/run.sh            # POSTGRES=postgres://... ROUNDS=50 SECONDS_PER_RUN=5
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
POSTGRES="${POSTGRES:-${TOLLGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}}"
cargo build --release --bin tollgate --example cluster_bench
taskset -c 0 target/release/examples/cluster_bench --bin target/release/tollgate \
    --postgres "$POSTGRES" --rounds "${ROUNDS:-50}" --seconds "${SECONDS_PER_RUN:-5}"
