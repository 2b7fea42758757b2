#!/usr/bin/env bash
# One prepared GPU run: install what is needed, then time the RNN-T loss (myna vs fast_rnnt built
# for CUDA), greedy and beam decoding (myna vs NeMo 3.0) and a training step (myna vs NeMo), and
# print one table (benchmarks/gpu.py does the timing; see its docstring for what each row does).
#
# Usage (from anywhere; the repository is this script's parent folder):
#   bash benchmarks/gpu.sh [--dry-run] [--skip-install] [--dir DIR] [-- GPU_PY_ARGS...]
#
#   --dry-run       no installs, tiny sizes, on CPU when there is no GPU: checks that every part
#                   runs (uses myna's .venv, and /work/peers/{ft,nemo} when they exist)
#   --skip-install  use the venvs already in DIR
#   --dir DIR       where the venvs and the results go (default: $GPU_BENCH_DIR or /tmp/myna-gpu)
#   after --         passed to benchmarks/gpu.py (e.g. --parts loss,train --decode-model M.nemo)
#
# Environment: PYTHON (CPython >= 3.10 for the venvs, default python3), TORCH (pip spec of the
# CUDA torch, default "torch==2.13.0": PyPI's Linux wheel is a CUDA build; TORCHVISION to match
# it for NeMo, default "torchvision<=0.29.1"), FAST_RNNT (1.3),
# NEMO ("nemo-toolkit[asr]==3.0.0"), JOBS (compile jobs, default: all cores).
#
# Venvs made in DIR: myna (torch + myna editable + fast_rnnt built with -DFT_WITH_CUDA=ON when
# nvcc is found), nemo (NeMo 3.0 with the same torch). Each install step is skipped when done.
# The table goes to stdout and DIR/gpu_results.{md,json}. The decode rows need a trained model:
# without --decode-model, the dummy model is trained on the bundled digits (about a minute).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="${GPU_BENCH_DIR:-/tmp/myna-gpu}"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
TORCHVISION="${TORCHVISION:-torchvision<=0.29.1}"  # the torchvision that goes with TORCH
FAST_RNNT="${FAST_RNNT:-1.3}"
NEMO="${NEMO:-nemo-toolkit[asr]==3.0.0}"
JOBS="${JOBS:-$(nproc)}"
DRY_RUN=0
SKIP_INSTALL=0
PASS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --skip-install) SKIP_INSTALL=1 ;;
        --dir) DIR="$2"; shift ;;
        --) shift; PASS=("$@"); break ;;
        -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[gpu.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'gpu.sh: error: %s\n' "$*" >&2; exit 1; }

has_gpu() { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }

make_venv() {  # make_venv DIR
    [[ -x "$1/bin/python" ]] || { log "creating venv $1"; "$PYTHON" -m venv "$1"; }
    "$1/bin/python" -m pip install --quiet --upgrade pip >/dev/null
}

# Build fast_rnnt from its PyPI sdist against the venv's torch, with CUDA. The same three
# patches as benchmarks/install_peers.sh (pybind11 from pip instead of a download, C++20 for
# torch's headers, tests off); see benchmarks/README.md.
build_fast_rnnt_cuda() {  # build_fast_rnnt_cuda PY
    local py=$1
    if "$py" -c "import fast_rnnt" 2>/dev/null; then log "fast_rnnt already installed"; return 0; fi
    if ! command -v nvcc >/dev/null && [[ ! -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
        log "no nvcc: fast_rnnt is not built (its rows will say so)"; return 0
    fi
    export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
    "$py" -m pip install --quiet "pybind11==3.1.0" cmake setuptools wheel numpy
    local work; work=$(mktemp -d)
    "$py" -m pip download --quiet --no-deps --no-binary :all: -d "$work" "fast_rnnt==$FAST_RNNT"
    tar -xzf "$work"/fast_rnnt-*.tar.gz -C "$work"
    local src; src=$(ls -d "$work"/fast_rnnt-*/)
    printf '%s\n' 'find_package(pybind11 CONFIG REQUIRED)' >"$src/cmake/pybind11.cmake"
    local args="-DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=20 -Dpybind11_DIR=$("$py" -m pybind11 --cmakedir)"
    args="$args -DFT_WITH_CUDA=ON -DFT_BUILD_TESTS=OFF"
    log "building fast_rnnt $FAST_RNNT with CUDA (log: $DIR/build-fast_rnnt.log)"
    if FT_CMAKE_ARGS="$args" MAKEFLAGS="-j$JOBS" "$py" -m pip install --verbose --no-deps \
        --no-build-isolation --no-cache-dir "$src" >"$DIR/build-fast_rnnt.log" 2>&1; then
        log "fast_rnnt built"
    else
        log "fast_rnnt did not build with CUDA (tail of the log below); its rows will say so"
        tail -n 15 "$DIR/build-fast_rnnt.log" >&2
    fi
    rm -rf "$work"
}

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
ARGS=(--json "$DIR/gpu_results.json")

if [[ $DRY_RUN == 1 ]]; then
    MYNA_PY="$REPO/.venv/bin/python"
    [[ -x "$MYNA_PY" ]] || MYNA_PY=$(command -v python3)
    ARGS+=(--dry-run)
    [[ -x /work/peers/ft/bin/python ]] && ARGS+=(--peer-python /work/peers/ft/bin/python)
    [[ -x /work/peers/nemo/bin/python ]] && ARGS+=(--nemo-python /work/peers/nemo/bin/python)
    has_gpu || ARGS+=(--device cpu)
    DUMMY="$REPO/exp/contextnet_rnnt_dummy/contextnet_rnnt_dummy.nemo"  # from scripts/main.sh, if run
    [[ -f "$DUMMY" && " ${PASS[*]-} " != *" --decode-model "* ]] && ARGS+=(--decode-model "$DUMMY")
    log "dry run with $MYNA_PY ($(has_gpu && echo GPU || echo 'no GPU: CPU fallback'))"
else
    has_gpu || die "no CUDA device (nvidia-smi -L fails); use --dry-run to check the script on CPU"
    MYNA_VENV="$DIR/myna"
    NEMO_VENV="$DIR/nemo"
    MYNA_PY="$MYNA_VENV/bin/python"
    if [[ $SKIP_INSTALL == 0 ]]; then
        make_venv "$MYNA_VENV"
        log "myna venv: $TORCH, myna (editable)"
        "$MYNA_PY" -m pip install --quiet "$TORCH"
        "$MYNA_PY" -m pip install --quiet -e "$REPO"
        build_fast_rnnt_cuda "$MYNA_PY"
        make_venv "$NEMO_VENV"
        log "nemo venv: $TORCH, $NEMO (a few minutes)"
        "$NEMO_VENV/bin/python" -m pip install --quiet "$TORCH"
        # the torch above, and a torchvision that goes with it (as for the CPU NeMo venv)
        printf '%s\n' "$TORCH" "$TORCHVISION" >"$DIR/constraints.txt"
        "$NEMO_VENV/bin/python" -m pip install --quiet -c "$DIR/constraints.txt" "$NEMO" \
            || log "NeMo did not install; its rows will say so"
    fi
    "$MYNA_PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || die "$MYNA_PY has no CUDA torch ($TORCH); set TORCH to a CUDA wheel"
    ARGS+=(--device cuda --peer-python "$MYNA_PY" --nemo-python "$NEMO_VENV/bin/python")
    # The decode rows need a trained model both tools load: the dummy ContextNet-Transducer on the
    # bundled digits (what scripts/main.sh trains; about a minute), unless one is passed after --.
    if [[ " ${PASS[*]-} " != *" --decode-model "* ]]; then
        DUMMY="$DIR/dummy/contextnet_rnnt_dummy.nemo"
        if [[ ! -f "$DUMMY" ]]; then
            log "training the dummy model for the decode rows (log: $DIR/train_dummy.log)"
            (cd "$REPO" && "$MYNA_VENV/bin/myna" train conf/contextnet_rnnt_dummy.yaml \
                model.train_ds.manifest_filepath=data/espeak_digits/train.json \
                model.validation_ds.manifest_filepath=data/espeak_digits/dev.json \
                exp_manager.exp_dir="$DIR/dummy" >"$DIR/train_dummy.log" 2>&1) \
                || log "training the dummy model failed; the decode rows use random weights"
        fi
        [[ -f "$DUMMY" ]] && ARGS+=(--decode-model "$DUMMY")
    fi
fi

log "timing (loss, decode, train)"
cd "$REPO"
"$MYNA_PY" benchmarks/gpu.py "${ARGS[@]}" "${PASS[@]}" | tee "$DIR/gpu_results.md"
log "table in $DIR/gpu_results.md, rows in $DIR/gpu_results.json"
