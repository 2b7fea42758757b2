"""Speed and peak memory of RNN-T losses: myna (full, pruned) against installed peers.

Each (implementation, shape, threads) runs in a fresh subprocess so that peak RSS
(``resource.getrusage``) belongs to that measurement alone. A run times loss + backward
starting from random ``am`` (B, T, C) and ``lm`` (B, S+1, C) leaf tensors:

- full losses: ``logits = am.unsqueeze(2) + lm.unsqueeze(1)`` (B, T, S+1, C), then the loss.
- myna-full-inplace: the same with ``inplace_grad=True`` (the gradient overwrites ``logits``,
  which is what optimized_transducer always does).
- nemo-full: the same logits into NeMo's default loss (``RNNTLossNumba``, "warprnnt_numba"), whose
  CPU path is a Python loop that NeMo's users never run (they train on GPU); it takes seconds per
  call, so its process times ``--slow-runs`` runs (default 1) after the warm-up.
- pruned pipelines: simple loss with ``return_grad``, ranges with s_range 5, pruning,
  pruned loss on ``am_pruned + lm_pruned``; backward of simple + pruned.

The median of ``--runs`` timed runs after ``--warmup`` runs is reported (wall clock and
process CPU time), with the peak RSS of the whole subprocess, its start-up footprint (RSS
after ``import torch`` and the implementation, before any input exists; venvs differ here)
and the difference of the two, which is what the loss step itself costs; and the mean loss,
which should agree between implementations of the same loss.

``--accuracy`` measures instead how far each implementation's float32 gradients lie from a
float64 run of the same implementation on the same inputs (largest absolute error divided by
the largest absolute float64 gradient), for the simple loss and for the whole pruned
pipeline (simple + pruned, with the ranges of the float64 run used by both), and checks the
simple loss's arc occupancies: the largest (at most 1) and the sum of the blank ones (exactly
B * T for the regular topology: every path crosses each frame by one blank). The float64
gradients of all implementations are also compared with each other.

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
    python benchmarks/rnnt_loss.py --accuracy            # float32 vs float64 gradients
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
    # NeMo's default RNN-T loss ("warprnnt_numba") on CPU: a Python loop over T x (U+1) that
    # NeMo's users never run (on GPU the same class runs numba CUDA kernels)
    "nemo-full": ("nemo.collections.asr.parts.numba.rnnt_loss", "full"),
}
# rows that take seconds per call: timed with at most --slow-runs runs (see --help)
SLOW_IMPLS = {"nemo-full"}
# printed under the table for rows measured on a path their users never run
NOTES = {
    "nemo-full": "NeMo's default RNN-T loss (warprnnt_numba) on CPU: log_softmax, then a Python loop over "
                 "T x (U+1) (cpu_rnnt.CPURNNT). NeMo's users never train on this path; on GPU the same "
                 "class runs numba CUDA kernels, which this CPU row says nothing about.",
}


# --------------------------------------------------------------------------- worker side


def _import_impl(impl: str):
    """The module that implements ``impl`` (imported now, so that start-up RSS includes it)."""
    if impl.startswith("myna"):
        import myna.losses as lib

        return lib
    if impl == "torchaudio-full":
        import torchaudio.functional as lib

        return lib
    if impl == "nemo-full":
        from nemo.collections.asr.parts.numba.rnnt_loss import rnnt_pytorch as lib

        return lib
    return __import__(IMPLS[impl][0])


def _make_step(impl: str, lib, am, lm, symbols, boundary):
    """A closure running one loss + backward for ``impl``; returns the loss as a float."""
    import torch

    module, kind = IMPLS[impl]
    B, T, C = am.shape
    S = symbols.shape[1]

    if impl.startswith(("myna", "fast_rnnt", "k2")):
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
        F = lib
        targets = symbols.to(torch.int32)
        t_len = torch.full((B,), T, dtype=torch.int32)
        u_len = torch.full((B,), S, dtype=torch.int32)

        def step():
            logits = am.unsqueeze(2) + lm.unsqueeze(1)
            loss = F.rnnt_loss(logits, targets, t_len, u_len, blank=BLANK, reduction="mean")
            loss.backward()
            return loss.item()

        return step

    if impl == "nemo-full":
        # the class NeMo's RNNTLoss builds for loss_name "default"; on CPU it takes log_softmax
        # itself and runs the warp-transducer recursion in Python (cpu_rnnt.CPURNNT)
        loss_fn = lib.RNNTLossNumba(blank=BLANK, reduction="mean")
        t_len = torch.full((B,), T, dtype=torch.int64)
        u_len = torch.full((B,), S, dtype=torch.int64)

        def step():
            logits = am.unsqueeze(2) + lm.unsqueeze(1)
            loss = loss_fn(logits, symbols, t_len, u_len).sum()
            loss.backward()
            return loss.item()

        return step

    if impl == "optimized_transducer-full":
        optimized_transducer = lib
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


def _inputs(shape, dtype=None, device="cpu"):
    """The benchmark's inputs: am (B, T, C), lm (B, S+1, C) leaves, symbols (B, S), boundary (B, 4)."""
    import torch

    B, T, S, C = shape
    g = torch.Generator().manual_seed(0)
    am = torch.randn(B, T, C, generator=g)
    lm = torch.randn(B, S + 1, C, generator=g)
    symbols = torch.randint(1, C, (B, S), generator=g)
    boundary = torch.tensor([[0, 0, S, T]] * B, dtype=torch.int64)
    if dtype is not None:
        am, lm = am.to(dtype), lm.to(dtype)
    am, lm, symbols, boundary = (x.to(device) for x in (am, lm, symbols, boundary))
    return am.requires_grad_(), lm.requires_grad_(), symbols, boundary


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(impl: str, shape, threads: int, warmup: int, runs: int, device: str = "cpu") -> dict:
    """Time one implementation. On CPU memory is the process's RSS; on CUDA it is the device
    memory torch allocates (peak, and what is held before the inputs exist)."""
    import torch

    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    lib = _import_impl(impl)
    if cuda:
        torch.zeros(1, device=device)  # create the context before measuring
        torch.cuda.reset_peak_memory_stats(device)
        start_mb = torch.cuda.memory_allocated(device) / 2**20
    else:
        start_mb = _max_rss_mb()
    am, lm, symbols, boundary = _inputs(shape, device=device)
    step = _make_step(impl, lib, am, lm, symbols, boundary)
    for _ in range(warmup):
        step()
        am.grad = lm.grad = None
    walls, cpus, losses = [], [], []
    for _ in range(runs):
        sync()
        w0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())  # .item() inside synchronises too
        sync()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        am.grad = lm.grad = None
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _max_rss_mb()
    return {
        "impl": impl,
        "shape": list(shape),
        "threads": threads,
        "device": device,
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "walls": walls,
        "peak_mb": peak_mb,
        "start_mb": start_mb,
        "loss": statistics.mean(losses),
        "torch": torch.__version__,
        "load1": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }


# accuracy: module -> name in the tables
ACCURACY_LIBS = {"myna": "myna.losses", "fast_rnnt": "fast_rnnt", "k2": "k2"}


def _rel_err(x, ref) -> float:
    """max |x - ref| / max |ref|, in float64."""
    ref = ref.double()
    return float((x.double() - ref).abs().max() / ref.abs().max())


def accuracy_worker(name: str, shape, threads: int, ref_path: str) -> dict:
    """float32 against float64 gradients of one implementation; float64 ones saved to ``ref_path``."""
    import torch

    torch.set_num_threads(threads)
    lib = _import_impl("myna-pruned") if name == "myna" else __import__(ACCURACY_LIBS[name])
    B, T, S, C = shape
    runs = {}
    for dtype in (torch.float32, torch.float64):
        am, lm, symbols, boundary = _inputs(shape, dtype)
        simple, (px_grad, py_grad) = lib.rnnt_loss_simple(
            lm, am, symbols, BLANK, boundary, reduction="mean", return_grad=True
        )
        # copies: fast_rnnt 1.3's backward scales the returned occupancies in place
        px_grad, py_grad = px_grad.clone(), py_grad.clone()
        g_simple = torch.autograd.grad(simple, (am, lm))
        runs[dtype] = {"simple": g_simple, "px_grad": px_grad, "py_grad": py_grad}
    # one set of ranges (from the float64 occupancies) for both precisions: the pruned
    # pipeline is then the same function of (am, lm), and its gradients can be compared
    ref = runs[torch.float64]
    ranges = lib.get_rnnt_prune_ranges(ref["px_grad"], ref["py_grad"], boundary, S_RANGE)
    for dtype in (torch.float32, torch.float64):
        am, lm, symbols, boundary = _inputs(shape, dtype)
        simple = lib.rnnt_loss_simple(lm, am, symbols, BLANK, boundary, reduction="mean")
        am_p, lm_p = lib.do_rnnt_pruning(am, lm, ranges)
        pruned = lib.rnnt_loss_pruned(am_p + lm_p, symbols, ranges, BLANK, boundary, reduction="mean")
        runs[dtype]["pipeline"] = torch.autograd.grad(simple + pruned, (am, lm))
    f32 = runs[torch.float32]
    torch.save({k: ref[k] for k in ("simple", "pipeline", "px_grad", "py_grad")}, ref_path)
    occ = torch.cat((f32["px_grad"].flatten(), f32["py_grad"].flatten()))
    return {
        "lib": name,
        "shape": list(shape),
        "simple_am": _rel_err(f32["simple"][0], ref["simple"][0]),
        "simple_lm": _rel_err(f32["simple"][1], ref["simple"][1]),
        "pipeline_am": _rel_err(f32["pipeline"][0], ref["pipeline"][0]),
        "pipeline_lm": _rel_err(f32["pipeline"][1], ref["pipeline"][1]),
        "occ_err": max(_rel_err(f32["px_grad"], ref["px_grad"]), _rel_err(f32["py_grad"], ref["py_grad"])),
        "occ_min": float(occ.min()),
        "occ_max": float(occ.max()),
        "blank_sum": float(f32["py_grad"].double().sum()),
        "blank_sum_exact": B * T,
        "torch": torch.__version__,
    }


def run_accuracy(pythons: dict, shapes, threads: int, timeout: float):
    """One subprocess per (implementation, shape); float64 gradients compared across them here."""
    import tempfile

    import torch

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            refs = {}
            for name, python in pythons.items():
                ref_path = os.path.join(tmp, f"{name}-{'x'.join(map(str, shape))}.pt")
                cmd = [python, str(Path(__file__).resolve()), "--accuracy-worker", name,
                       "--shape", ",".join(map(str, shape)), "--threads", str(threads), "--ref-path", ref_path]
                r = _run_worker(cmd, name, timeout)
                r.setdefault("lib", name)
                r.setdefault("shape", list(shape))
                if "error" not in r:
                    refs[name] = torch.load(ref_path)
                results.append(r)
            base = refs.get("myna")
            for r in results:
                if tuple(r["shape"]) == tuple(shape) and r["lib"] in refs and base is not None:
                    other = refs[r["lib"]]
                    r["ref_vs_myna_ref"] = max(
                        _rel_err(other[k][i], base[k][i]) for k in ("simple", "pipeline") for i in (0, 1)
                    )
    return results


def format_accuracy(results) -> str:
    head = (f"{'shape (B,T,S,C)':<20} {'implementation':<12} {'simple dam':>10} {'simple dlm':>10} "
            f"{'pruned dam':>10} {'pruned dlm':>10} {'occ err':>9} {'occ min':>9} {'occ max':>9} "
            f"{'blank occ sum':>14} {'exact':>6} {'f64 vs myna f64':>15}")
    lines = [head, "-" * len(head)]
    for r in results:
        shape = "(" + ",".join(map(str, r["shape"])) + ")"
        if "error" in r:
            lines.append(f"{shape:<20} {r['lib']:<12} failed: {r['error']}")
            continue
        cross = f"{r['ref_vs_myna_ref']:.1e}" if "ref_vs_myna_ref" in r else "-"
        lines.append(
            f"{shape:<20} {r['lib']:<12} {r['simple_am']:>10.1e} {r['simple_lm']:>10.1e} "
            f"{r['pipeline_am']:>10.1e} {r['pipeline_lm']:>10.1e} {r['occ_err']:>9.1e} {r['occ_min']:>9.2g} "
            f"{r['occ_max']:>9.7f} {r['blank_sum']:>14.4f} {r['blank_sum_exact']:>6} {cross:>15}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- driver side


def _can_import(python: str, module: str, cache: dict) -> bool:
    key = (python, module)
    if key not in cache:
        try:
            r = subprocess.run(
                [python, "-c", f"import {module}"], cwd=str(REPO_ROOT / "benchmarks"),
                capture_output=True, timeout=600,
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


def run_one(python: str, impl: str, shape, threads: int, warmup: int, runs: int, timeout: float,
            device: str = "cpu"):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if impl.startswith("myna"):
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        python, str(Path(__file__).resolve()), "--worker", impl,
        "--shape", ",".join(map(str, shape)), "--threads", str(threads),
        "--warmup", str(warmup), "--runs", str(runs), "--device", device,
    ]
    r = _run_worker(cmd, impl, timeout, env)
    r.update(impl=impl, shape=list(shape), threads=threads)
    return r


def _run_worker(cmd, name: str, timeout: float, env=None) -> dict:
    """Run one worker subprocess; its last stdout line is a JSON object (or an error dict)."""
    if env is None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                           cwd=str(REPO_ROOT / "benchmarks"))
    except subprocess.TimeoutExpired:
        return {"error": f"{name}: timeout {timeout}s"}
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail}
    return json.loads(r.stdout.strip().splitlines()[-1])


def merge_repeats(results):
    """Results of --repeat sweeps -> one row per measurement: medians over the fresh processes."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["impl"], tuple(r["shape"]), r["threads"]), []).append(r)
    merged = []
    for rows in groups.values():
        ok = [r for r in rows if "error" not in r]
        if not ok:
            merged.append(rows[0])
            continue
        m = dict(ok[0])
        for key in ("wall", "cpu", "peak_mb", "start_mb", "loss"):
            m[key] = statistics.median(r[key] for r in ok)
        m["step_mb"] = statistics.median(r["peak_mb"] - r["start_mb"] for r in ok)
        m["process_walls"] = [r["wall"] for r in ok]
        m["load1_max"] = max(r.get("load1", float("nan")) for r in ok)
        merged.append(m)
    return merged


def format_table(results) -> str:
    """One table; the 'myna / this' columns compare myna-full to full losses and myna-pruned to
    pruned ones, by wall time, by process CPU time (the steadier of the two on a busy machine) and
    by memory above start-up ("step MB"); "load" is the highest 1-minute load average seen at the
    end of the row's processes."""
    ref = {}
    for r in results:
        if r["impl"].startswith("myna") and "error" not in r:
            if r["impl"] != "myna-full-inplace":
                ref[(tuple(r["shape"]), r["threads"], IMPLS[r["impl"]][1])] = r
    head = (f"{'shape (B,T,S,C)':<20} {'thr':>3}  {'implementation':<26} {'time s':>8} {'cpu s':>8} "
            f"{'peak MB':>8} {'start MB':>8} {'step MB':>8} {'loss':>10}   {'myna/this time':>14} "
            f"{'myna/this cpu':>13} {'myna/this step MB':>17} {'load':>5}")
    lines = [head, "-" * len(head)]
    for r in results:
        shape = "(" + ",".join(map(str, r["shape"])) + ")"
        if "error" in r:
            lines.append(f"{shape:<20} {r['threads']:>3}  {r['impl']:<26} failed: {r['error']}")
            continue
        step = r.get("step_mb", r["peak_mb"] - r["start_mb"])
        m = ref.get((tuple(r["shape"]), r["threads"], IMPLS[r["impl"]][1]))
        rt = f"{m['wall'] / r['wall']:.2f}x" if m else "-"
        rc = f"{m['cpu'] / r['cpu']:.2f}x" if m else "-"
        rm = f"{m.get('step_mb', m['peak_mb'] - m['start_mb']) / step:.2f}x" if m else "-"
        name = r["impl"] + ("*" if r["impl"] in NOTES else "")
        lines.append(
            f"{shape:<20} {r['threads']:>3}  {name:<26} {r['wall']:>8.3f} {r['cpu']:>8.3f} "
            f"{r['peak_mb']:>8.0f} {r['start_mb']:>8.0f} {step:>8.0f} {r['loss']:>10.3f}   {rt:>14} {rc:>13} {rm:>17} "
            f"{r.get('load1_max', r.get('load1', float('nan'))):>5.1f}"
        )
    shown = {r["impl"] for r in results}
    lines += [f"* {impl}: {note}" for impl, note in NOTES.items() if impl in shown]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the small shape (8, 250, 60, 500)")
    ap.add_argument("--shapes", nargs="+", metavar="B,T,S,C", help="shapes to run instead of the two defaults")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts (default 1 2)")
    ap.add_argument("--impl", nargs="+", default=list(IMPLS), choices=list(IMPLS), help="implementations to run")
    ap.add_argument("--peer-python", action="append", default=[], metavar="PEER=PYTHON",
                    help="interpreter for a peer module, e.g. fast_rnnt=/work/peers/ft/bin/python (repeatable)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per process; their median is the process's time")
    ap.add_argument("--slow-runs", type=int, default=1,
                    help=f"timed runs per process for the rows that take seconds per call ({', '.join(sorted(SLOW_IMPLS))}), "
                         "at most --runs")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the whole sweep this many times, each measurement in a fresh process every "
                         "time, interleaved; the table shows medians over the processes")
    ap.add_argument("--accuracy", action="store_true",
                    help="float32 vs float64 gradient accuracy of the pruned pipelines instead of speed")
    ap.add_argument("--device", default="cpu",
                    help="torch device (cuda: timed with synchronisation, memory = torch's CUDA allocations)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess")
    ap.add_argument("--json", type=Path, help="also write all results to this JSON file")
    ap.add_argument("--from-json", type=Path, nargs="+", metavar="JSON",
                    help="print the speed table of earlier --json files (rows of all files together) and exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--accuracy-worker", help=argparse.SUPPRESS)
    ap.add_argument("--ref-path", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker or args.accuracy_worker:
        shape = tuple(int(x) for x in args.shape.split(","))
        if args.worker:
            out = worker(args.worker, shape, args.threads[0], args.warmup, args.runs, args.device)
        else:
            out = accuracy_worker(args.accuracy_worker, shape, args.threads[0], args.ref_path)
        print(json.dumps(out))
        return 0

    if args.from_json:
        rows = [r for path in args.from_json for r in json.loads(path.read_text())]
        print(format_table(merge_repeats(rows)))
        return 0

    explicit = {}
    for item in args.peer_python:
        if "=" not in item:
            ap.error(f"--peer-python expects PEER=PYTHON, got {item!r}")
        name, python = item.split("=", 1)
        explicit[name] = python
    shapes = SHAPES[:1] if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(x) for x in shape.split(",")) for shape in args.shapes]
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    if args.accuracy:
        impls = [i for i in ("myna-pruned", "fast_rnnt-pruned", "k2-pruned") if i in args.impl]
        found = find_pythons(impls, explicit)
        pythons = {i.split("-")[0]: found[i] for i in impls if i in found}
        results = run_accuracy(pythons, shapes, args.threads[0], args.timeout)
        print(f"float32 vs float64 gradients (max abs error / max abs float64 gradient), {args.threads[0]} "
              f"thread(s); pruned = simple + pruned loss with s_range {S_RANGE}; occupancies of the simple loss")
        print(format_accuracy(results))
    else:
        pythons = find_pythons(args.impl, explicit)
        results = []
        for rep in range(args.repeat):
            for shape in shapes:
                for threads in args.threads:
                    for impl in args.impl:
                        if impl not in pythons:
                            continue
                        runs = min(args.runs, args.slow_runs) if impl in SLOW_IMPLS else args.runs
                        r = run_one(pythons[impl], impl, shape, threads, args.warmup, runs, args.timeout,
                                    args.device)
                        r["runs"] = runs
                        r["python"] = pythons[impl]
                        results.append(r)
                        if args.json:  # after every row: a long sweep that is stopped keeps its rows
                            args.json.write_text(json.dumps(results, indent=1))
                        print(f"# [{rep + 1}/{args.repeat}] {impl} {shape} threads={threads}: "
                              + (r["error"] if "error" in r else
                                 f"{r['wall']:.3f} s, {r['peak_mb']:.0f} MB peak, {r['start_mb']:.0f} MB at start"),
                              file=sys.stderr, flush=True)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        slow = sorted(SLOW_IMPLS & set(pythons))
        print(f"RNN-T loss + backward on {args.device}: median of {args.runs} runs after {args.warmup} "
              f"warm-up per process" + (f" ({', '.join(slow)}: {min(args.runs, args.slow_runs)} run(s))" if slow else "")
              + ", "
              f"median over {args.repeat} process(es) per row; {os.cpu_count()} CPUs, load average "
              f"{load0:.2f} at the start, {load:.2f} at the end, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
        print(format_table(merge_repeats(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
