"""Peak RSS of training steps of NeMo's "large" Conformer-Transducer, each memory saver on vs off.

The model is NeMo's "large" size (d_model 512, 17 layers, 8 heads, conv kernel 31, striding x4,
prediction/joint 640, ~120M parameters) with a 1024-piece vocabulary; the batch is 4 x 10 s of
seeded noise with ``--tokens`` targets each. One step is forward (featurizer, SpecAugment,
encoder, prediction net, joint, loss), backward and the optimizer step, in training mode.

Every row runs in a fresh subprocess, so ``peak RSS`` (``ru_maxrss``) is that configuration's
alone; ``before step`` is the resident size once the model is built (weights + interpreter), and
``step peak - before`` is what the step itself added (activations, joint, gradients, optimizer
state). Rows:

- ``baseline``: fp32, full RNN-T loss over the whole (B, T, U+1, V+1) joint, AdamW.
- ``fused_batch_size=1``: joint + loss one utterance at a time (``model.joint.fused_batch_size``).
- ``bf16 autocast``: ``torch.autocast("cpu", torch.bfloat16)`` around the forward pass
  (``trainer.precision: bf16-mixed``).
- ``gradient checkpointing``: ``model.encoder.gradient_checkpointing: true``.
- ``adamw8bit``: ``model.optim.name: adamw8bit`` (bitsandbytes); skipped when it is not installed.
- ``pruned loss``: ``model.loss.name: pruned`` (not a switch of its own, but the largest saver).
- ``all savers``: fused 1 + bf16 + checkpointing (+ adamw8bit when installed).

The max-duration filter (``train_ds.max_duration: 20``) is the fifth saver: it bounds T, and so
every row's activations; it is a data-side switch and is not timed here.

    python benchmarks/memory.py                   # all rows, ~1 min each on 2 cores
    python benchmarks/memory.py --rows baseline,fused_batch_size=1 --tokens 40
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import conformer_transducer_config, make_batch, run_worker, worker_env  # noqa: E402

ROWS = {
    "baseline": {},
    "fused_batch_size=1": {"fused": 1},
    "bf16 autocast": {"bf16": True},
    "gradient checkpointing": {"checkpointing": True},
    "adamw8bit": {"optim": "adamw8bit"},
    "pruned loss": {"pruned": True},
    "all savers": {"fused": 1, "bf16": True, "checkpointing": True, "optim": "adamw8bit?"},
}
VOCAB = 1024


class _Vocabulary:
    """Stands in for a 1024-piece tokenizer: the model only needs its size to build."""

    vocab_size = VOCAB

    def decode(self, ids):
        return " ".join(map(str, ids))


def large_config(options: dict) -> dict:
    cfg = conformer_transducer_config(d_model=512, n_layers=17, n_heads=8, pred_joint=640, vocab_size=VOCAB)
    cfg["encoder"]["gradient_checkpointing"] = bool(options.get("checkpointing"))
    cfg["joint"]["fuse_loss_wer"] = bool(options.get("fused"))
    cfg["joint"]["fused_batch_size"] = options.get("fused")
    cfg["loss"] = {"name": "pruned", "s_range": 5} if options.get("pruned") else {"name": "full"}
    return cfg


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rows_and_env(spec: str, known, threads: int) -> tuple[list[str], dict]:
    """The rows asked for (comma-separated, each one of ``known``) and the environment of the
    per-row worker processes (``threads`` BLAS/OpenMP threads, this checkout importable)."""
    rows = [r for r in spec.split(",") if r]
    unknown = sorted(set(rows) - set(known))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {list(known)}")
    return rows, worker_env(threads)


def run_rows(script: str, rows: list[str], env: dict, options: list[str]) -> list[dict]:
    """Run ``script --worker ROW *options`` for each row in a fresh process; the JSON each prints
    last (failures are printed with the end of their stderr and left out)."""
    results = [run_worker(row, [sys.executable, script, "--worker", row, *options], env) for row in rows]
    return [r for r in results if r is not None]


def _has_bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


def _worker(row: str, batch: int, seconds: float, tokens: int, threads: int, steps: int = 2) -> dict:
    import torch

    from myna.interop.adapter import build_model
    from myna.training.module import build_optimizer

    torch.set_num_threads(threads)
    options = dict(ROWS[row])
    optim = options.get("optim", "adamw")
    if optim == "adamw8bit?":
        optim = "adamw8bit" if _has_bitsandbytes() else "adamw"
    if optim == "adamw8bit" and not _has_bitsandbytes():
        return {"row": row, "skipped": "bitsandbytes is not installed"}
    torch.manual_seed(0)
    model = build_model(large_config(options), _Vocabulary()).train()
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], {"name": optim, "lr": 1e-4})
    data = {k: torch.from_numpy(v) for k, v in make_batch(batch, seconds, tokens, VOCAB).items()}
    before = _rss_mb()
    start = time.perf_counter()
    # From the second step on, the optimizer's state lives through forward and backward: that
    # is where an 8-bit optimizer saves memory, so the peak covers ``steps`` >= 2 steps.
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(options.get("bf16"))):
            out = model(data["audio"], data["audio_lengths"], data["tokens"], data["token_lengths"], step=10**6)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"row": row, "optim": optim, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "before_mb": before, "peak_mb": peak, "step_s": (time.perf_counter() - start) / steps,
            "loss": float(out["loss"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=50, help="target tokens per utterance")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="training steps per row (>= 2 counts optimizer state)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.batch, args.seconds, args.tokens, args.threads, args.steps)))
        return
    rows, env = rows_and_env(args.rows, ROWS, args.threads)
    print(f"Conformer-Transducer large, vocab {VOCAB}; batch {args.batch} x {args.seconds:g} s, {args.tokens} tokens, "
          f"{args.threads} threads; {args.steps} steps per row, each row in its own process", flush=True)
    results = run_rows(__file__, rows, env, ["--batch", str(args.batch), "--seconds", str(args.seconds),
                                             "--tokens", str(args.tokens), "--threads", str(args.threads),
                                             "--steps", str(args.steps)])
    base = next((r for r in results if r["row"] == "baseline" and "skipped" not in r), None)
    print()
    print("| saver | peak RSS MB | before step MB | step peak - before MB | x baseline (step part) | step s | loss |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        if "skipped" in r:
            print(f"| {r['row']} | skipped: {r['skipped']} | | | | | |")
            continue
        added = r["peak_mb"] - r["before_mb"]
        ratio = f"{added / (base['peak_mb'] - base['before_mb']):.2f}" if base else "-"
        name = r["row"] + (f" ({r['optim']})" if r["row"] == "all savers" else "")
        print(f"| {name} | {r['peak_mb']:.0f} | {r['before_mb']:.0f} | {added:.0f} | {ratio} | {r['step_s']:.1f} "
              f"| {r['loss']:.2f} |")


if __name__ == "__main__":
    main()
