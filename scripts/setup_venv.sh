#!/usr/bin/env bash
# Creates ./.venv (or $SEQREC_VENV) and installs seqrec-ray with its test extras.
# CPU install: torch is pinned to the 2.13.0 CPU wheel; set SEQREC_TORCH to override
# (e.g. SEQREC_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SEQREC_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment at $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.seqrec-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  echo "[setup] installing torch and seqrec-ray into $venv (first run takes a few minutes)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q ${SEQREC_TORCH:-torch==2.13.0}
  "$venv/bin/python" -m pip install -q -e "$here[test]"
  touch "$stamp"
fi
echo "[setup] ready: $venv"
