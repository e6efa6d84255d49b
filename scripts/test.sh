#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit and property tests of the
# planning core, the integration tests against real redis-server processes —
# Debian's (or REDIS_SERVER's), then a Redis 8.x, then Valkey 9.1 — the trigger, the systemd
# units, the Debian packages (lintian, and install/upgrade/purge in a booted
# container), an end-to-end boot in systemd-nspawn, and a smoke run of the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build   # libquantum.so and the trigger, which the integration tests run
# The Debian packages (tests/debian_install.rs installs them), lintian-clean:
# any error fails the run.
scripts/package.sh
lintian --fail-on error target/debian/quantum-redis-module_*.deb target/debian/quantum-stream-recover_*.deb
# The tests run the debug build just made, not the newer release build the
# packages hold (the harness would otherwise take the newest of the two).
export QUANTUM_MODULE="$PWD/target/debug/libquantum.so"
export QUANTUM_TRIGGER="$PWD/target/debug/quantum-stream-recover"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== tests against $("${REDIS_SERVER:-redis-server}" --version)"
cargo test 2>&1 | tee "$log"

# Version matrix: the integration tests again on Redis 8.x and on Valkey 9.1.
# The booted-container tests run Debian's own redis-server inside the
# container, whatever REDIS_SERVER says, so they are not repeated.
container_tests=(
    --skip timer_and_execstartpre_recover_in_a_real_systemd
    --skip packages_install_recover_upgrade_and_go_in_a_booted_debian
    --skip the_reference_consumer_survives_a_crash_loop_in_systemd
)
redis8=$(scripts/redis8.sh)
valkey=$(scripts/valkey.sh)
# The model test runs 300 of its 1,000 random sequences there (about 5 of its
# 12 minutes over three servers): the full run on 7.0 keeps the suite under 40
# minutes on two cores.
for server in "$redis8" "$valkey"; do
    echo "== tests against $("$server" --version)"
    REDIS_SERVER="$server" QUANTUM_MODEL_SEQUENCES=300 cargo test -p quantum-integration --tests -- \
        "${container_tests[@]}" 2>&1 | tee -a "$log"
done

# A small run of the benchmark, so it cannot rot (the real one: README, Benchmarks).
bench_out=$(mktemp -d)
cargo run -q -p quantum-bench -- --smoke --out "$bench_out"
test -s "$bench_out/BENCHMARKS.md" && test -s "$bench_out/benchmarks/scaling.svg"
rm -rf "$bench_out"

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
