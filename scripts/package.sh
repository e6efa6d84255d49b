#!/usr/bin/env bash
# Builds the two Debian packages into target/debian/ with cargo-deb:
#   quantum-redis-module    /usr/lib/redis/modules/libquantum.so
#   quantum-stream-recover  the trigger, its units, sysusers/tmpfiles/logrotate,
#                           the env file (conffile), man page, completions
# Versions come from the workspace version. cargo-deb is installed once into
# target/tools (so CI reuses it). QUANTUM_DEB_REVISION sets the Debian revision
# (default 1); QUANTUM_DEB_OUT another output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

tools="$PWD/target/tools"
if [ ! -x "$tools/bin/cargo-deb" ]; then
    cargo install --locked --root "$tools" cargo-deb
fi
export PATH="$tools/bin:$PATH"

cargo build --release -p quantum-module -p quantum-stream-recover
# Man page and completions from the trigger's own clap definition.
assets=target/debian-assets
cargo run -q -p quantum-stream-recover --example gen-docs -- "$assets"
gzip -9nf "$assets/quantum-stream-recover.1"

out="${QUANTUM_DEB_OUT:-target/debian}"
mkdir -p "$out"
for crate in quantum-module quantum-stream-recover; do
    cargo deb --no-build -p "$crate" --deb-revision "${QUANTUM_DEB_REVISION:-1}" --output "$out"
done
ls -1 "$out"/*.deb
