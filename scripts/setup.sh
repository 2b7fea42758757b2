#!/usr/bin/env bash
# Create .venv (if missing) and install myna into it: torch's CPU wheel first, so that pip never
# pulls a multi-GB CUDA build to satisfy the package's torch range, then the package and test deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${MYNA_TORCH_VERSION:-2.13.0}
EXTRAS=${MYNA_EXTRAS:-test,tensorboard}   # scripts/test.sh adds "hf" (transformers, datasets) and "bnb" (bitsandbytes) for their tests
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "torch==${TORCH_VERSION}"
fi
python -m pip install -q -e ".[${EXTRAS}]"
python -c "import myna, torch; print(f'myna {myna.__version__} with torch {torch.__version__}')"
