#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit and property tests of the
# planning core, and the integration tests against real redis-server processes
# (REDIS_SERVER=/path/to/redis-server picks another server version).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo build   # libquantum.so, which the integration tests load
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test 2>&1 | tee "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
