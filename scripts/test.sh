#!/usr/bin/env bash
# The test suite: set-up, then pytest. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
MYNA_EXTRAS=test,hf,bnb,sphere bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q "$@"
