"""wav2vec 2.0 pre-training step: Hourglass Transformer (k=4) against the plain stack, Base-shaped.

Both rows build the model of ``conf/wav2vec2_base.yaml`` (12 post-LN layers, 768 wide, the
7-layer conv feature encoder, quantizer, 100 negatives); the Hourglass row changes only
``encoder.hourglass`` to NVIDIA's ``"[2,(8,4),2]"`` (2 layers at full rate, 8 at a quarter, 2
at full rate; naive resampling). LayerDrop is set to 0 in both so each step runs every layer.
One step is the whole pre-training step in training mode: masks and negatives (the same draws
in both rows: they are a function of the step), forward, loss, backward and AdamW's update, on
the same batch of seeded noise. Each row runs in a fresh subprocess: ``peak RSS`` is that
row's ``ru_maxrss``; ``start-up`` is the resident size once the model, optimizer and batch
exist; the difference is what training steps add (activations, gradients, optimizer state).
Timing: ``--warmup`` steps untimed, then the median of ``--steps`` steps.

    python benchmarks/hourglass.py                          # plain vs k=4, 4 x 8 s, 2 threads
    python benchmarks/hourglass.py --rows plain,k=2,k=4,k=4-linear --batch 2 --seconds 15

NVIDIA's figure for k=4 (DLE README, A100 80GB, bf16, Base pre-training): 1.37x throughput and
62.35% of the memory of the plain model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import _rss_mb, rows_and_env, run_rows  # noqa: E402
from train_step import REPO  # noqa: E402

ROWS = {"plain": None, "k=2": ("[2,(8,2),2]", "naive"), "k=4": ("[2,(8,4),2]", "naive"),
        "k=4-linear": ("[2,(8,4),2]", "linear")}


def _worker(row: str, batch: int, seconds: float, threads: int, warmup: int, steps: int) -> dict:
    import numpy as np
    import torch
    import yaml

    from myna.interop.adapter import build_model
    from myna.training.module import build_optimizer

    torch.set_num_threads(threads)
    cfg = yaml.safe_load((REPO / "conf" / "wav2vec2_base.yaml").read_text())["model"]
    cfg["encoder"]["layerdrop"] = 0.0
    if ROWS[row] is not None:
        cfg["encoder"]["hourglass"], cfg["encoder"]["hourglass_resample"] = ROWS[row]
    torch.manual_seed(0)
    model = build_model(cfg, None).train()
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg["optim"])
    samples = int(seconds * 16000)
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.standard_normal((batch, samples)).astype(np.float32) * 0.1)
    lengths = torch.full((batch,), samples, dtype=torch.long)
    lengths[1::2] = int(samples * 0.8)  # padding in half the rows, as in real batches
    before = _rss_mb()
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        out = model(audio, lengths, step=step)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"row": row, "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "before_mb": before,
            "peak_mb": peak, "step_s": statistics.median(times), "steps_s": times,
            "loss": float(out["loss"]), "frames": int(model.encoder.output_lengths(torch.tensor([samples]))[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="plain,k=4", help=f"comma-separated subset of {list(ROWS)}")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.batch, args.seconds, args.threads, args.warmup, args.steps)))
        return
    rows, env = rows_and_env(args.rows, ROWS, args.threads)
    print(f"wav2vec 2.0 Base pre-training step; batch {args.batch} x {args.seconds:g} s (odd rows 80%), "
          f"{args.threads} threads, {args.warmup} warm-up + median of {args.steps} steps; load average "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)
    results = run_rows(__file__, rows, env, ["--batch", str(args.batch), "--seconds", str(args.seconds),
                                             "--threads", str(args.threads), "--warmup", str(args.warmup),
                                             "--steps", str(args.steps)])
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    base = next((r for r in results if r["row"] == "plain"), None)
    print()
    print("| encoder | params M | step s | speed-up vs plain | peak RSS MB | x plain | start-up MB | "
          "peak - start-up MB | x plain |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        added = r["peak_mb"] - r["before_mb"]
        speed = f"{base['step_s'] / r['step_s']:.2f}x" if base else "-"
        peak_ratio = f"{100 * r['peak_mb'] / base['peak_mb']:.0f}%" if base else "-"
        added_ratio = f"{100 * added / (base['peak_mb'] - base['before_mb']):.0f}%" if base else "-"
        print(f"| {r['row']} | {r['params_m']:.1f} | {r['step_s']:.2f} | {speed} | {r['peak_mb']:.0f} | {peak_ratio} "
              f"| {r['before_mb']:.0f} | {added:.0f} | {added_ratio} |")


if __name__ == "__main__":
    main()
