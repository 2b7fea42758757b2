#!/usr/bin/env bash
# Install the peer RNN-T loss libraries that benchmarks/rnnt_loss.py compares myna against.
#
# They are benchmark-only: nothing in myna imports them, and they live in their own virtualenvs
# outside the repository so that myna's own environment never sees them.
#
#   PEERS_DIR/ft  torch 2.13.0 (CPU) + fast_rnnt 1.3 + optimized_transducer 1.4 (built from sdists)
#   PEERS_DIR/ta  torch 2.14.1 + torchaudio 2.11.0 (wheels)
#
# Usage: bash benchmarks/install_peers.sh [PEERS_DIR]      (default: $PEERS_DIR or /work/peers)
# Environment: PYTHON (interpreter for the venvs, must be CPython 3.11; default python3),
#              JOBS (parallel compile jobs; default 2).
# Safe to re-run: finished steps are detected and skipped. See benchmarks/README.md for why each
# patch below is needed.
set -euo pipefail

PEERS_DIR="${1:-${PEERS_DIR:-/work/peers}}"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-2}"

FT_TORCH=2.13.0
FAST_RNNT=1.3
OPTIMIZED_TRANSDUCER=1.4
PYBIND11=3.1.0
TA_TORCH=2.14.1
TORCHAUDIO=2.11.0

log() { printf '[install_peers %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { printf 'install_peers: error: %s\n' "$*" >&2; exit 1; }

# --- preflight --------------------------------------------------------------------------------
py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
    || die "cannot run PYTHON=$PYTHON"
[[ "$py_version" == "3.11" ]] || die "PYTHON=$PYTHON is Python $py_version; the pinned wheels need 3.11"
for tool in g++ make; do
    command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install build-essential)"
done
mkdir -p "$PEERS_DIR"
PEERS_DIR=$(cd "$PEERS_DIR" && pwd)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/myna-peers.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

pip_in() {  # pip_in PY ARGS... -- pip of that interpreter, minus the noise about missing
    # entries of a local file:// index (harmless where pip.conf lists local indexes)
    local py=$1; shift
    { "$py" -m pip "$@" 2>&1 1>&3 \
        | sed '/is ignored: it is neither a file nor a directory/d' >&2; } 3>&1
}

make_venv() {  # make_venv DIR -- create a venv unless one is already there
    if [[ ! -x "$1/bin/python" ]]; then
        log "creating venv $1"
        "$PYTHON" -m venv "$1"
    fi
}

has_dist() {  # has_dist PY NAME VERSION -- is NAME==VERSION installed (local label ignored)?
    "$1" - "$2" "$3" <<'EOF' 2>/dev/null
import sys
from importlib import metadata
try:
    have = metadata.version(sys.argv[1])
except metadata.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if have.split("+")[0] == sys.argv[2] else 1)
EOF
}

# Replace a CMake module that downloads pybind11 at configure time with a lookup of the pybind11
# pip package, so the build works without reaching GitHub.
patch_pybind11_cmake() {  # patch_pybind11_cmake SRC_DIR
    local f="$1/cmake/pybind11.cmake"
    [[ -f "$f" ]] || die "expected $f in the sdist"
    printf '%s\n' '# Patched by myna benchmarks/install_peers.sh: use the pybind11 pip package.' \
        'find_package(pybind11 CONFIG REQUIRED)' >"$f"
}

build_sdist() {  # build_sdist PY NAME VERSION CMAKE_ENV_VAR CMAKE_ARGS PATCH_FN
    local py=$1 name=$2 version=$3 env_var=$4 cmake_args=$5 patch_fn=$6
    if has_dist "$py" "$name" "$version" && "$py" -c "import $name" 2>/dev/null; then
        log "$name $version already installed"
        return
    fi
    log "downloading $name $version sdist"
    pip_in "$py" download --quiet --no-deps --no-binary :all: -d "$WORK/dl" "$name==$version"
    local tarball
    tarball=$(ls "$WORK/dl/$name-$version".tar.gz)
    tar -xzf "$tarball" -C "$WORK"
    local src="$WORK/$name-$version"
    "$patch_fn" "$src"
    log "building $name $version (a few minutes; log: $PEERS_DIR/build-$name.log)"
    local start=$SECONDS
    if ! env "$env_var=$cmake_args" MAKEFLAGS="-j$JOBS" \
        "$py" -m pip install --verbose --no-deps --no-build-isolation --no-cache-dir "$src" \
        >"$PEERS_DIR/build-$name.log" 2>&1; then
        tail -n 40 "$PEERS_DIR/build-$name.log" >&2
        die "building $name failed; full log in $PEERS_DIR/build-$name.log"
    fi
    log "built $name $version in $((SECONDS - start)) s"
}

patch_fast_rnnt() {
    patch_pybind11_cmake "$1"
}

patch_optimized_transducer() {
    patch_pybind11_cmake "$1"
    # Its top-level CMakeLists.txt hard-sets C++14 with a plain set(), which a -D option cannot
    # override, and torch's headers refuse anything older than C++17.
    sed -i 's/^set(CMAKE_CXX_STANDARD 14)$/set(CMAKE_CXX_STANDARD 20)/' "$1/CMakeLists.txt"
    grep -q '^set(CMAKE_CXX_STANDARD 20)$' "$1/CMakeLists.txt" \
        || die "could not raise the C++ standard in $1/CMakeLists.txt"
}

total_start=$SECONDS

# --- venv ft: fast_rnnt + optimized_transducer --------------------------------------------------
FT="$PEERS_DIR/ft"
make_venv "$FT"
FT_PY="$FT/bin/python"
log "ft: installing torch $FT_TORCH and build requirements"
pip_in "$FT_PY" install --quiet "torch==$FT_TORCH" numpy "pybind11==$PYBIND11" setuptools wheel
if ! command -v cmake >/dev/null; then
    pip_in "$FT_PY" install --quiet cmake
    export PATH="$FT/bin:$PATH"
fi
PYBIND11_DIR=$("$FT_PY" -m pybind11 --cmakedir)
# Setting <PKG>_CMAKE_ARGS replaces the packages' default arguments, so the release build type
# and the switch that turns off their test targets are repeated here.
COMMON_CMAKE="-DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=20 -Dpybind11_DIR=$PYBIND11_DIR"
build_sdist "$FT_PY" fast_rnnt "$FAST_RNNT" FT_CMAKE_ARGS \
    "$COMMON_CMAKE -DFT_WITH_CUDA=OFF -DFT_BUILD_TESTS=OFF" patch_fast_rnnt
build_sdist "$FT_PY" optimized_transducer "$OPTIMIZED_TRANSDUCER" OT_CMAKE_ARGS \
    "$COMMON_CMAKE -DOT_WITH_CUDA=OFF -DOT_BUILD_TESTS=OFF" patch_optimized_transducer

# --- venv ta: torchaudio ------------------------------------------------------------------------
TA="$PEERS_DIR/ta"
make_venv "$TA"
TA_PY="$TA/bin/python"
if has_dist "$TA_PY" torch "$TA_TORCH" && has_dist "$TA_PY" torchaudio "$TORCHAUDIO"; then
    log "ta: torch $TA_TORCH and torchaudio $TORCHAUDIO already installed"
else
    # torchaudio's wheel declares no torch requirement, so torch is pinned explicitly. Only
    # torch 2.14.1 loads torchaudio 2.11.0's extension; the Linux 2.14.1 wheel is a CUDA build
    # (about 3 GB installed with its nvidia-* wheels) that runs fine on CPU.
    log "ta: installing torch $TA_TORCH and torchaudio $TORCHAUDIO"
    pip_in "$TA_PY" install --quiet "torch==$TA_TORCH" "torchaudio==$TORCHAUDIO" numpy
fi

# --- check: every peer computes the same loss on one tiny lattice -------------------------------
cat >"$WORK/check.py" <<'EOF'
import sys
import torch

B, T, S, C = 2, 6, 3, 5
gen = torch.Generator().manual_seed(0)
am = torch.randn(B, T, C, generator=gen)
lm = torch.randn(B, S + 1, C, generator=gen)
symbols = torch.randint(1, C, (B, S), generator=gen)
logits = (am.unsqueeze(2) + lm.unsqueeze(1)).contiguous()
frames = torch.full((B,), T, dtype=torch.int32)
tokens = torch.full((B,), S, dtype=torch.int32)
for name in sys.argv[1:]:
    x = logits.clone().requires_grad_()
    if name == "fast_rnnt":
        import fast_rnnt
        loss = fast_rnnt.rnnt_loss(x, symbols, termination_symbol=0, reduction="sum")
    elif name == "optimized_transducer":
        import optimized_transducer
        x = logits.reshape(-1, C).clone().requires_grad_()
        loss = optimized_transducer.transducer_loss(
            x, symbols.int(), frames, tokens, blank=0, reduction="sum", from_log_softmax=False)
    elif name == "torchaudio":
        import torchaudio.functional
        loss = torchaudio.functional.rnnt_loss(
            x, symbols.int(), frames, tokens, blank=0, reduction="sum")
    loss.backward()
    print(f"{name} {loss.item():.6f}")
EOF
log "checking the peers on a tiny lattice"
results=$("$FT_PY" "$WORK/check.py" fast_rnnt optimized_transducer && "$TA_PY" "$WORK/check.py" torchaudio)
printf '%s\n' "$results"
distinct=$(awk '{print $2}' <<<"$results" | sort -u | wc -l)
[[ "$distinct" == 1 ]] || die "the peers disagree on the tiny lattice (see above)"

versions() {  # versions PY DIST... -- print NAME==VERSION for each distribution
    local py=$1; shift
    "$py" -c 'import sys; from importlib import metadata
print(" ".join(f"{d}=={metadata.version(d)}" for d in sys.argv[1:]))' "$@"
}
log "ft ($FT_PY): $(versions "$FT_PY" torch fast_rnnt optimized_transducer)"
log "ta ($TA_PY): $(versions "$TA_PY" torch torchaudio)"
log "done in $((SECONDS - total_start)) s. For benchmarks/rnnt_loss.py:"
echo "export MYNA_PEER_PYTHONS=$FT_PY:$TA_PY"
