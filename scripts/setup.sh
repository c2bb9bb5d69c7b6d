#!/usr/bin/env bash
# Create .venv with a CPU build of PyTorch and mpnas installed (editable). Idempotent: a second call is quick.
# GPU users: install your own torch build into .venv first; the pinned CPU wheel is only installed when
# no torch is present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q "torch==2.13.0"
fi
.venv/bin/pip install -q -e ".[test,export]"
