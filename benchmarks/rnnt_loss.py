"""Speed and peak memory of RNN-T losses: myna (full, pruned) against installed peers.

Each (implementation, shape, threads) runs in a fresh subprocess so that peak RSS
(``resource.getrusage``) belongs to that measurement alone. A run times loss + backward
starting from random ``am`` (B, T, C) and ``lm`` (B, S+1, C) leaf tensors:

- full losses: ``logits = am.unsqueeze(2) + lm.unsqueeze(1)`` (B, T, S+1, C), then the loss.
- myna-full-inplace: the same with ``inplace_grad=True`` (the gradient overwrites ``logits``,
  which is what optimized_transducer always does).
- pruned pipelines: simple loss with ``return_grad``, ranges with s_range 5, pruning,
  pruned loss on ``am_pruned + lm_pruned``; backward of simple + pruned.

The median of ``--runs`` timed runs after ``--warmup`` runs is reported (wall clock and
process CPU time), with the peak RSS of the whole subprocess (which includes ``import
torch``) and the mean loss, which should agree between implementations of the same loss.

Peers are optional and often live in their own virtualenvs (see benchmarks/README.md). For
each peer the first interpreter that can import it is used, searched in this order:
``--peer-python NAME=PYTHON`` flags, this interpreter, then the interpreters listed in the
environment variable ``MYNA_PEER_PYTHONS`` (separated by ':'). Peers that no interpreter can
import are skipped. myna always runs with this interpreter.

Timings are only comparable on an otherwise idle machine. On an oversubscribed one, OpenMP's
default active spin-wait makes every multi-threaded torch op expensive (myna's loss issues a
few thousand small ops; C++ peers a handful): run with ``OMP_WAIT_POLICY=PASSIVE`` there, which
this script passes on to every subprocess, and compare the "cpu s" column.

    python benchmarks/rnnt_loss.py                       # both shapes, 1 and 2 threads
    python benchmarks/rnnt_loss.py --quick               # (8, 250, 60, 500) only
    MYNA_PEER_PYTHONS=/work/peers/ft/bin/python:/work/peers/ta/bin/python \\
        python benchmarks/rnnt_loss.py --quick --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(8, 250, 60, 500), (16, 500, 120, 500)]
S_RANGE = 5
BLANK = 0

# name -> (module to import, kind)
IMPLS = {
    "myna-full": ("myna.losses", "full"),
    "myna-full-inplace": ("myna.losses", "full"),
    "myna-pruned": ("myna.losses", "pruned"),
    "fast_rnnt-full": ("fast_rnnt", "full"),
    "fast_rnnt-pruned": ("fast_rnnt", "pruned"),
    "k2-full": ("k2", "full"),
    "k2-pruned": ("k2", "pruned"),
    "optimized_transducer-full": ("optimized_transducer", "full"),
    "torchaudio-full": ("torchaudio", "full"),
}


# --------------------------------------------------------------------------- worker side


def _make_step(impl: str, am, lm, symbols, boundary):
    """A closure running one loss + backward for ``impl``; returns the loss as a float."""
    import torch

    module, kind = IMPLS[impl]
    B, T, C = am.shape
    S = symbols.shape[1]

    if impl.startswith(("myna", "fast_rnnt", "k2")):
        if impl.startswith("myna"):
            import myna.losses as lib
        else:
            lib = __import__(module)
        extra = {"inplace_grad": True} if impl == "myna-full-inplace" else {}
        if kind == "full":

            def step():
                logits = am.unsqueeze(2) + lm.unsqueeze(1)
                loss = lib.rnnt_loss(logits, symbols, BLANK, boundary, reduction="mean", **extra)
                loss.backward()
                return loss.item()

        else:

            def step():
                simple, (px_grad, py_grad) = lib.rnnt_loss_simple(
                    lm, am, symbols, BLANK, boundary, reduction="mean", return_grad=True
                )
                ranges = lib.get_rnnt_prune_ranges(px_grad, py_grad, boundary, S_RANGE)
                am_p, lm_p = lib.do_rnnt_pruning(am, lm, ranges)
                pruned = lib.rnnt_loss_pruned(am_p + lm_p, symbols, ranges, BLANK, boundary, reduction="mean")
                (simple + pruned).backward()
                return pruned.item()

        return step

    if impl == "torchaudio-full":
        import torchaudio.functional as F

        targets = symbols.to(torch.int32)
        t_len = torch.full((B,), T, dtype=torch.int32)
        u_len = torch.full((B,), S, dtype=torch.int32)

        def step():
            logits = am.unsqueeze(2) + lm.unsqueeze(1)
            loss = F.rnnt_loss(logits, targets, t_len, u_len, blank=BLANK, reduction="mean")
            loss.backward()
            return loss.item()

        return step

    if impl == "optimized_transducer-full":
        import optimized_transducer

        targets = symbols.to(torch.int32)
        t_len = torch.full((B,), T, dtype=torch.int32)
        u_len = torch.full((B,), S, dtype=torch.int32)

        def step():
            # equal lengths: the packed (sum_b T_b (U_b+1), C) layout is a plain reshape
            logits = (am.unsqueeze(2) + lm.unsqueeze(1)).reshape(-1, C)
            loss = optimized_transducer.transducer_loss(
                logits, targets, t_len, u_len, blank=BLANK, from_log_softmax=False, reduction="mean"
            )
            loss.backward()
            return loss.item()

        return step

    raise ValueError(f"unknown implementation {impl!r}; known: {sorted(IMPLS)}")


def worker(impl: str, shape, threads: int, warmup: int, runs: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    B, T, S, C = shape
    g = torch.Generator().manual_seed(0)
    am = torch.randn(B, T, C, generator=g).requires_grad_()
    lm = torch.randn(B, S + 1, C, generator=g).requires_grad_()
    symbols = torch.randint(1, C, (B, S), generator=g)
    boundary = torch.tensor([[0, 0, S, T]] * B, dtype=torch.int64)
    step = _make_step(impl, am, lm, symbols, boundary)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in range(warmup):
        step()
        am.grad = lm.grad = None
    walls, cpus, losses = [], [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        am.grad = lm.grad = None
    return {
        "impl": impl,
        "shape": list(shape),
        "threads": threads,
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "walls": walls,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "setup_mb": rss_before,
        "loss": statistics.mean(losses),
        "torch": torch.__version__,
    }


# --------------------------------------------------------------------------- driver side


def _can_import(python: str, module: str, cache: dict) -> bool:
    key = (python, module)
    if key not in cache:
        try:
            r = subprocess.run(
                [python, "-c", f"import {module}"], cwd=str(REPO_ROOT / "benchmarks"),
                capture_output=True, timeout=120,
            )
            cache[key] = r.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            cache[key] = False
    return cache[key]


def find_pythons(impls, explicit: dict) -> dict:
    """impl -> interpreter that imports it (myna: this interpreter); missing peers are dropped."""
    env_list = [p for p in os.environ.get("MYNA_PEER_PYTHONS", "").split(":") if p]
    cache: dict = {}
    found = {}
    for impl in impls:
        module, _ = IMPLS[impl]
        if impl.startswith("myna"):
            found[impl] = sys.executable
            continue
        peer = module
        candidates = ([explicit[peer]] if peer in explicit else []) + [sys.executable] + env_list
        for python in candidates:
            if _can_import(python, module, cache):
                found[impl] = python
                break
        else:
            print(f"# skipping {impl}: no interpreter imports {module} (tried {candidates})", file=sys.stderr)
    return found


def run_one(python: str, impl: str, shape, threads: int, warmup: int, runs: int, timeout: float):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if impl.startswith("myna"):
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        python, str(Path(__file__).resolve()), "--worker", impl,
        "--shape", ",".join(map(str, shape)), "--threads", str(threads),
        "--warmup", str(warmup), "--runs", str(runs),
    ]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                           cwd=str(REPO_ROOT / "benchmarks"))
    except subprocess.TimeoutExpired:
        return {"impl": impl, "shape": list(shape), "threads": threads, "error": f"timeout {timeout}s"}
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {"impl": impl, "shape": list(shape), "threads": threads, "error": tail}
    return json.loads(r.stdout.strip().splitlines()[-1])


def format_table(results) -> str:
    """One table; 'myna / this' compares myna-full to full losses and myna-pruned to pruned ones."""
    ref = {}
    for r in results:
        if r["impl"].startswith("myna") and "error" not in r:
            if r["impl"] != "myna-full-inplace":
                ref[(tuple(r["shape"]), r["threads"], IMPLS[r["impl"]][1])] = r
    head = (f"{'shape (B,T,S,C)':<20} {'thr':>3}  {'implementation':<26} {'time s':>8} {'cpu s':>8} "
            f"{'peak MB':>8} {'loss':>10}   {'myna/this time':>14} {'myna/this mem':>13}")
    lines = [head, "-" * len(head)]
    for r in results:
        shape = "(" + ",".join(map(str, r["shape"])) + ")"
        if "error" in r:
            lines.append(f"{shape:<20} {r['threads']:>3}  {r['impl']:<26} failed: {r['error']}")
            continue
        m = ref.get((tuple(r["shape"]), r["threads"], IMPLS[r["impl"]][1]))
        rt = f"{m['wall'] / r['wall']:.2f}x" if m else "-"
        rm = f"{m['peak_mb'] / r['peak_mb']:.2f}x" if m else "-"
        lines.append(
            f"{shape:<20} {r['threads']:>3}  {r['impl']:<26} {r['wall']:>8.3f} {r['cpu']:>8.3f} "
            f"{r['peak_mb']:>8.0f} {r['loss']:>10.3f}   {rt:>14} {rm:>13}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the small shape (8, 250, 60, 500)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts (default 1 2)")
    ap.add_argument("--impl", nargs="+", default=list(IMPLS), choices=list(IMPLS), help="implementations to run")
    ap.add_argument("--peer-python", action="append", default=[], metavar="PEER=PYTHON",
                    help="interpreter for a peer module, e.g. fast_rnnt=/work/peers/ft/bin/python (repeatable)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per measurement; the median is reported")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess")
    ap.add_argument("--json", type=Path, help="also write all results to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        shape = tuple(int(x) for x in args.shape.split(","))
        print(json.dumps(worker(args.worker, shape, args.threads[0], args.warmup, args.runs)))
        return 0

    explicit = {}
    for item in args.peer_python:
        if "=" not in item:
            ap.error(f"--peer-python expects PEER=PYTHON, got {item!r}")
        name, python = item.split("=", 1)
        explicit[name] = python
    pythons = find_pythons(args.impl, explicit)
    shapes = SHAPES[:1] if args.quick else SHAPES
    results = []
    for shape in shapes:
        for threads in args.threads:
            for impl in args.impl:
                if impl not in pythons:
                    continue
                r = run_one(pythons[impl], impl, shape, threads, args.warmup, args.runs, args.timeout)
                r["python"] = pythons[impl]
                results.append(r)
                print(f"# {impl} {shape} threads={threads}: "
                      + (r["error"] if "error" in r else f"{r['wall']:.3f} s, {r['peak_mb']:.0f} MB"),
                      file=sys.stderr, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"RNN-T loss + backward, median of {args.runs} runs after {args.warmup} warm-up; "
          f"{os.cpu_count()} CPUs, load average {load:.2f} at the end, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
