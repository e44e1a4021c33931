#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS each, default 60), with cargo-fuzz
# (installed when missing) on the machine's stable toolchain (RUSTC_BOOTSTRAP lets it use the
# sanitizer flags). A crash stops the run; its input is in fuzz/artifacts/<target>/, and it
# becomes a regression test in the crate's own tests.
#
#   bash fuzz/run.sh                  # every target
#   FUZZ_SECONDS=600 bash fuzz/run.sh path_normalize
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi
for target in "${targets[@]}"; do
    echo "== $target (${SECONDS_EACH}s)"
    mkdir -p "corpus/$target"
    cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$SECONDS_EACH" -max_len=4096
done
