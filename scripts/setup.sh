#!/usr/bin/env bash
# Set up scinas in ./.venv on a fresh machine: PyTorch first (the CPU build by default), then the
# package with its dev extras. Installing torch first matters: the package's range (torch>=2.4)
# is then already met and pip never re-resolves it to a multi-GB CUDA build.
#   SCINAS_TORCH="torch==2.13.0" (default)  -- set it to another spec for a CUDA machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${SCINAS_TORCH:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -e ".[dev]"
# bytecode for the editable source, as pip writes for installed packages: where
# PYTHONDONTWRITEBYTECODE is set, every scinas process would otherwise compile it again
.venv/bin/python -m compileall -q src
# compare's minirocket method: numba compiles MiniRocket's kernels once, into its cache
.venv/bin/python -m scinas.minirocket
.venv/bin/python -c "import torch, scinas; print('scinas', scinas.__version__, 'with torch', torch.__version__)"
