#!/usr/bin/env bash
# The test suite on 2 CPU cores (under 10 minutes). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The tests also check the ExecuTorch export, an optional extra (mpnas[pte]) that `mpnas run` does not need.
.venv/bin/python -c "import executorch" 2>/dev/null || .venv/bin/pip install -q -e ".[pte]"
export MPNAS_CACHE="${MPNAS_CACHE:-$PWD/.cache/mpnas}"
.venv/bin/python -m pytest -q "$@"
