#!/usr/bin/env bash
# The test suite: set-up, then pytest. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
MYNA_EXTRAS=test,tensorboard,wandb,hf,bnb,sphere,stores,lm,onnx bash scripts/setup.sh
# espeak-ng (Debian package) is the bundled TTS backend; its tests skip where it cannot be had.
if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng; }; } \
      >/dev/null 2>&1 || echo "note: could not install espeak-ng; the tests that need it skip" >&2
  else
    echo "note: espeak-ng is missing (apt-get install espeak-ng); the tests that need it skip" >&2
  fi
fi
. .venv/bin/activate
python -m pytest -q "$@"
