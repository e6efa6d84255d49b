#!/usr/bin/env bash
# Demo: builds the module, starts a throwaway redis-server with it (unix socket
# in a temp dir, nothing persisted), creates a dead consumer with stuck entries,
# a zombie with none and a live one, and shows QUANTUM.RECOVER at work.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

cargo build --release -p quantum-module
module="$PWD/target/release/libquantum.so"
dir=$(mktemp -d)
trap 'redis-cli -s "$dir/redis.sock" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
redis-server --port 0 --unixsocket "$dir/redis.sock" --dir "$dir" --save "" \
    --logfile "$dir/redis.log" --daemonize yes --loadmodule "$module"
for _ in $(seq 100); do redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done

r() { redis-cli -s "$dir/redis.sock" "$@"; }
show() { echo; echo "\$ redis-cli $*"; r "$@"; }
S=quantum:stream:trade.intent
G=quantum:group:execution:trade.intent

echo "== setting up: exec-4242 read 3 entries and died; exec-1111 died holding nothing"
r set quantum:mode TESTNET >/dev/null
r xgroup create "$S" "$G" '$' mkstream >/dev/null
for i in 1 2 3 4 5; do r xadd "$S" '*' order "$i" >/dev/null; done
r xreadgroup group "$G" exec-4242 count 3 streams "$S" '>' >/dev/null
r xgroup createconsumer "$S" "$G" exec-1111 >/dev/null
sleep 1.5
echo "== exec-5555 is alive: it just read the other 2"
r xreadgroup group "$G" exec-5555 count 2 streams "$S" '>' >/dev/null

echo; echo "== before"
show xinfo consumers "$S" "$G"
show xpending "$S" "$G"

echo; echo "== what a call would do (DRYRUN changes nothing)"
show quantum.recover "$S" "$G" MINIDLE 1000 ZOMBIEIDLE 1000 DRYRUN

echo; echo "== the real call: entries idle >= 1 s move to 'recovery', empty consumers idle > 1 s go"
show quantum.recover "$S" "$G" MINIDLE 1000 ZOMBIEIDLE 1000

echo; echo "== after"
show xinfo consumers "$S" "$G"
show xpending "$S" "$G" - + 10

echo; echo "== in LIVE mode the module refuses to change anything"
r set quantum:mode LIVE >/dev/null
show quantum.recover "$S" "$G" MINIDLE 1000 ZOMBIEIDLE 1000

echo; echo "== counters since load"
show info quantum
