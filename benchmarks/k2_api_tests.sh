#!/usr/bin/env bash
# Run k2's and fast_rnnt's own RNN-T test files, unedited, against myna.losses.
#
# The four files (k2/python/tests/{rnnt_loss,mutual_information}_test.py of k2 and
# fast_rnnt/python/tests/... of fast_rnnt, at the commits below) are the peers' code: they are
# never kept in this repository. This script copies them into a temporary directory outside the
# repository, next to two throwaway packages `k2` and `fast_rnnt` whose only content is
# `from myna.losses import *` plus the one module attribute the files read besides the RNN-T API
# (`k2.with_cuda`, `fast_rnnt.with_cuda()`: true, since myna.losses runs wherever torch runs),
# and runs the files there. A pass means the test's own assertions held with myna's functions.
#
#   bash benchmarks/k2_api_tests.sh                      # downloads the files from GitHub
#   bash benchmarks/k2_api_tests.sh --k2 ~/src/k2 --fast-rnnt ~/src/fast_rnnt   # local clones
#
# --k2 / --fast-rnnt take a git repository (clone or bare: the pinned commit is read with
# `git show`) or a directory holding the two test files. PYTHON (default: python) is the
# interpreter with myna's dependencies (myna itself is put on PYTHONPATH); extra arguments after
# `--` go to the test runner (pytest when installed, else unittest; e.g. -k pruned).
# Some of the files' checks compare with torchaudio.functional.rnnt_loss when torchaudio imports.
set -euo pipefail

K2_COMMIT=a741ae88abc6995345aa166464a239b7d270dd4c
FT_COMMIT=83e4637ffde1819d4d0400ab59152528d776068d
FILES=(rnnt_loss_test.py mutual_information_test.py)
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
K2_SRC=""
FT_SRC=""
PYTEST_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --k2) K2_SRC=$2; shift 2 ;;
        --fast-rnnt) FT_SRC=$2; shift 2 ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "k2_api_tests.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/myna-k2-api.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# get NAME SRC COMMIT SUBDIR: the test files of one peer into $WORK/NAME
get() {
    local name=$1 src=$2 commit=$3 subdir=$4 owner=$5 f
    mkdir -p "$WORK/$name"
    for f in "${FILES[@]}"; do
        if [ -z "$src" ]; then
            curl -fsSL "https://raw.githubusercontent.com/$owner/$commit/$subdir/$f" -o "$WORK/$name/$f" || {
                echo "k2_api_tests.sh: cannot download $owner@$commit $subdir/$f; pass a local clone with --$name" >&2
                exit 1
            }
        elif git --git-dir="$src" rev-parse --git-dir >/dev/null 2>&1 || git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
            local gd=$src
            git -C "$src" rev-parse --git-dir >/dev/null 2>&1 && gd=$(git -C "$src" rev-parse --absolute-git-dir)
            git --git-dir="$gd" show "$commit:$subdir/$f" > "$WORK/$name/$f" || {
                echo "k2_api_tests.sh: $src has no $subdir/$f at commit $commit" >&2
                exit 1
            }
        elif [ -f "$src/$f" ]; then
            cp "$src/$f" "$WORK/$name/$f"
        else
            echo "k2_api_tests.sh: $src is neither a git repository nor a directory holding $f" >&2
            exit 1
        fi
    done
}
get k2 "$K2_SRC" "$K2_COMMIT" k2/python/tests k2-fsa/k2
get fast-rnnt "$FT_SRC" "$FT_COMMIT" fast_rnnt/python/tests k2-fsa/fast_rnnt

mkdir -p "$WORK/alias/k2" "$WORK/alias/fast_rnnt"
printf 'from myna.losses import *  # noqa: F401,F403\n\nwith_cuda = True\n' > "$WORK/alias/k2/__init__.py"
printf 'from myna.losses import *  # noqa: F401,F403\n\n\ndef with_cuda():\n    return True\n' \
    > "$WORK/alias/fast_rnnt/__init__.py"

PYTHON=$(command -v "$PYTHON") || { echo "k2_api_tests.sh: no interpreter $PYTHON" >&2; exit 1; }
PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "import myna.losses" || { echo "k2_api_tests.sh: $PYTHON cannot import myna.losses" >&2; exit 1; }
# the files are unittest test cases: pytest runs them when it is installed, unittest otherwise
RUNNER=(-m pytest -q -p no:cacheprovider)
"$PYTHON" -c "import pytest" 2>/dev/null || RUNNER=(-m unittest)
status=0
for name in k2 fast-rnnt; do
    echo "== $name's tests against myna.losses ($PYTHON ${RUNNER[*]})"
    (cd "$WORK/$name" && PYTHONPATH="$WORK/alias:$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" \
        "$PYTHON" "${RUNNER[@]}" "${FILES[@]}" "${PYTEST_ARGS[@]}") || status=1
done
exit $status
