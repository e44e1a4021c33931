#!/usr/bin/env bash
# The whole test suite (the README's second command):
#   1. `cargo test`: every test, with the proxy's cleartext HTTP/1 on Tollgate's own server
#      (the default, `listen.http1 = "tollgate"`);
#   2. every test that sends traffic through the proxy listener again on hyper's server
#      (`TOLLGATE_TEST_HTTP1=hyper`, read by tests/common and the tests that write their own
#      config), so both servers pass the same tests. tests/h1_differential.rs compares the two
#      directly in step 1.
# Arguments go to both `cargo test` runs (e.g. `-- --nocapture`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test "$@"
PROXY_TESTS=(admin admission_alloc cluster durability framing gateway3 h2_abuse kubo ledger llm
    paging per_core properties proxy quotas reseller sdk_retries streaming tls upstream_pool)
TOLLGATE_TEST_HTTP1=hyper cargo test "${PROXY_TESTS[@]/#/--test=}" "$@"
