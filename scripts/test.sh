#!/usr/bin/env bash
# One command: create the venv if needed, install, run the whole test suite.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/setup_venv.sh"
venv="${SEQREC_VENV:-$here/.venv}"
# The Redis store tests start their own redis-server; install Debian's when we can (root + apt).
if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing redis-server (Debian package) for the Redis store tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1; } \
    || echo "[setup] could not install redis-server: the Redis store tests will be skipped"
fi
cd "$here"
exec "$venv/bin/python" -m pytest "$@"
