#!/usr/bin/env bash
# The test suite on 2 CPU cores (under 10 minutes). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPNAS_CACHE="${MPNAS_CACHE:-$PWD/.cache/mpnas}"
.venv/bin/python -m pytest -q "$@"
