#!/usr/bin/env bash
# One command: create the venv if needed, install, run the whole test suite.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/setup_venv.sh"
venv="${SEQREC_VENV:-$here/.venv}"
cd "$here"
exec "$venv/bin/python" -m pytest "$@"
