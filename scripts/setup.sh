#!/usr/bin/env bash
# Create .venv (if missing) and install myna into it: torch's CPU wheel first, so that pip never
# pulls a multi-GB CUDA build to satisfy the package's torch range, then the package and test deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${MYNA_TORCH_VERSION:-2.13.0}
EXTRAS=${MYNA_EXTRAS:-test}   # scripts/test.sh adds "hf" (transformers, datasets) for the HF tests
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "torch==${TORCH_VERSION}" 2>&1 | grep -v "^WARNING: Location" || true
fi
python -m pip install -q -e ".[${EXTRAS}]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import myna, torch; print(f'myna {myna.__version__} with torch {torch.__version__}')"
