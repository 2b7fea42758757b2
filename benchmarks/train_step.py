"""One optimizer step of NeMo's "small" Conformer-Transducer: myna (full, pruned loss) vs NeMo 3.0.

The model is NeMo's published "small" size (d_model 176, 16 layers, 4 heads, conv kernel 31,
striding x4, prediction/joint 320) with the 128-piece fixture tokenizer. A step is
forward (featurizer, SpecAugment, encoder, prediction net, joint, loss), backward and AdamW,
in training mode (dropout on), on a batch of 8 x 10 s of seeded noise with 60 target tokens
each, with 2 threads.

The parent builds the myna model once (seeded), exports it with ``save_nemo`` and writes the
batch; each row then runs in a fresh subprocess, so its peak RSS is its own:

- ``myna-full``: the full RNN-T loss over the (B, T, U+1, V+1) joint.
- ``myna-pruned``: the pruned loss (s_range 5; simple_loss_scale 0.5 after warm-up); the two
  small trivial-joiner projections it adds start from random, everything else is the same.
- ``nemo``: NeMo 3.0 ``ASRModel.restore_from`` of the exported archive (same weights), its
  default numba RNN-T loss (``fuse_loss_wer`` off). Needs an interpreter that imports
  ``nemo.collections.asr``: this one, or the one in ``MYNA_NEMO_PYTHON``.

Reported per row: median wall seconds of the timed steps (after ``--warmup`` steps, which
include numba's JIT compile), split into encoder forward (featurizer + SpecAugment + encoder),
loss forward (prediction net + joint + loss), backward and optimizer; peak RSS; the loss; and
the step time relative to NeMo.

    python benchmarks/train_step.py                        # myna rows only
    MYNA_NEMO_PYTHON=/work/peers/nemo/bin/python python benchmarks/train_step.py
    python benchmarks/train_step.py --steps 1 --warmup 1 --rows myna-full,myna-pruned
    python benchmarks/train_step.py --device cuda         # on a GPU (benchmarks/gpu.sh runs this)

With ``--device cuda`` the step is timed with ``torch.cuda.synchronize`` around each part and
memory is torch's peak CUDA allocation instead of the RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOKENIZER = REPO.parent / "shared" / "fixtures" / "nemo" / "tokenizer"
ROWS = ("myna-full", "myna-pruned", "nemo")


def small_config(vocab_size: int = 128) -> dict:
    """NeMo's conformer_transducer_bpe "small" model section (sizes from NeMo's size table)."""
    return conformer_transducer_config(d_model=176, n_layers=16, n_heads=4, pred_joint=320, vocab_size=vocab_size)


def conformer_transducer_config(d_model: int, n_layers: int, n_heads: int, pred_joint: int, vocab_size: int,
                                conv_kernel: int = 31) -> dict:
    """A NeMo-shaped Conformer-Transducer ``model:`` section (NeMo's example config, sizes changed)."""
    return {
        "sample_rate": 16000,
        "tokenizer": {"dir": None, "type": "bpe"},
        "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                         "sample_rate": 16000, "normalize": "per_feature", "window_size": 0.025,
                         "window_stride": 0.01, "window": "hann", "features": 80, "n_fft": 512,
                         "frame_splicing": 1, "dither": 1.0e-05, "pad_to": 0},
        "spec_augment": {"_target_": "nemo.collections.asr.modules.SpectrogramAugmentation",
                         "freq_masks": 2, "time_masks": 10, "freq_width": 27, "time_width": 0.05},
        "encoder": {"_target_": "nemo.collections.asr.modules.ConformerEncoder", "feat_in": 80, "feat_out": -1,
                    "n_layers": n_layers, "d_model": d_model, "subsampling": "striding", "subsampling_factor": 4,
                    "subsampling_conv_channels": -1, "ff_expansion_factor": 4, "self_attention_model": "rel_pos",
                    "n_heads": n_heads, "att_context_size": [-1, -1], "xscaling": True, "untie_biases": True,
                    "pos_emb_max_len": 5000, "conv_kernel_size": conv_kernel, "conv_norm_type": "batch_norm",
                    "dropout": 0.1, "dropout_pre_encoder": 0.1, "dropout_emb": 0.0, "dropout_att": 0.1},
        "decoder": {"_target_": "nemo.collections.asr.modules.RNNTDecoder", "blank_as_pad": True,
                    "prednet": {"pred_hidden": pred_joint, "pred_rnn_layers": 1, "dropout": 0.2}},
        "joint": {"_target_": "nemo.collections.asr.modules.RNNTJoint", "fuse_loss_wer": False,
                  "fused_batch_size": 4,
                  "jointnet": {"joint_hidden": pred_joint, "activation": "relu", "dropout": 0.2}},
        "decoding": {"strategy": "greedy_batch", "greedy": {"max_symbols": 10}},
        "loss": {"loss_name": "default"},
    }


def make_batch(batch: int, seconds: float, tokens: int, vocab: int, seed: int = 0) -> dict:
    """Seeded noise audio (B, L) float32 (16-bit range like NeMo's loader gives) and targets (B, U)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    samples = int(seconds * 16000)
    return {"audio": (rng.standard_normal((batch, samples)) * 0.1).astype("float32"),
            "audio_lengths": np.full(batch, samples, dtype="int64"),
            "tokens": rng.integers(0, vocab, (batch, tokens)).astype("int64"),
            "token_lengths": np.full(batch, tokens, dtype="int64")}


def build_myna(model_cfg: dict, tokenizer_dir: Path, seed: int = 0):
    """Seeded myna model from a NeMo-shaped config."""
    import torch

    from myna.interop.adapter import build_model
    from myna.text import load_tokenizer

    torch.manual_seed(seed)
    return build_model(model_cfg, load_tokenizer(tokenizer_dir))


# ---- worker (one row, in its own process) ----------------------------------------------------
def _worker(row: str, model_path: str, inputs_path: str, warmup: int, steps: int, threads: int,
            device: str = "cpu") -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    data = {k: torch.from_numpy(v).to(device) for k, v in np.load(inputs_path).items()}
    if row == "nemo":
        step_fn, params = _nemo_step(model_path, data, device, sync)
    else:
        step_fn, params = _myna_step(row, model_path, data, device, sync)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    times, losses = [], []
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        t_enc, loss = step_fn()
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        if i >= warmup:
            times.append((t3 - t0, t_enc, t1 - t0 - t_enc, t2 - t1, t3 - t2))
            losses.append(float(loss))
    med = [statistics.median(col) for col in zip(*times)]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"row": row, "step_s": med[0], "enc_fwd_s": med[1], "loss_fwd_s": med[2], "backward_s": med[3],
            "optim_s": med[4], "peak_mb": peak, "loss": statistics.mean(losses), "device": device}


def _myna_step(row: str, model_path: str, data: dict, device: str = "cpu", sync=lambda: None):
    import torch

    from myna.interop.adapter import build_model
    from myna.interop.nemo import load_nemo

    model = load_nemo(model_path)
    if row == "myna-pruned":
        cfg = {k: v for k, v in model.config.items() if k != "target"}
        cfg["loss"] = {"name": "pruned", "s_range": 5}
        pruned = build_model(cfg, model.tokenizer)
        missing, unexpected = pruned.load_state_dict(model.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("simple_") for k in missing), (missing, unexpected)
        model = pruned
    model.to(device).train()

    def step():
        t0 = time.perf_counter()
        features, lengths = model.featurize(data["audio"], data["audio_lengths"])
        encoded, encoded_lengths = model.encode(features, lengths)
        sync()
        t_enc = time.perf_counter() - t0
        out = model.forward_transducer(encoded, encoded_lengths, data["tokens"], data["token_lengths"], step=None)
        return t_enc, out["loss"]

    return step, [p for p in model.parameters() if p.requires_grad]


def _nemo_step(model_path: str, data: dict, device: str = "cpu", sync=lambda: None):
    import logging

    from nemo.collections.asr.models import ASRModel
    from nemo.utils import logging as nemo_logging

    nemo_logging.setLevel(logging.ERROR)
    model = ASRModel.restore_from(model_path, map_location=device)
    model.train()

    def step():
        t0 = time.perf_counter()
        encoded, encoded_len = model.forward(input_signal=data["audio"], input_signal_length=data["audio_lengths"])
        sync()
        t_enc = time.perf_counter() - t0
        decoder, target_length, _ = model.decoder(targets=data["tokens"], target_length=data["token_lengths"])
        joint = model.joint(encoder_outputs=encoded, decoder_outputs=decoder)
        loss = model.loss(log_probs=joint, targets=data["tokens"], input_lengths=encoded_len,
                          target_lengths=target_length)
        return t_enc, loss

    return step, [p for p in model.parameters() if p.requires_grad]


# ---- parent ------------------------------------------------------------------------------------
def _nemo_python() -> str | None:
    for python in [sys.executable, os.environ.get("MYNA_NEMO_PYTHON")]:
        if python and subprocess.run([python, "-c", "import nemo.collections.asr"], capture_output=True).returncode == 0:
            return python
    return None


def worker_env(threads: int) -> dict:
    """The environment of a per-row worker process: ``threads`` BLAS/OpenMP threads, this checkout
    importable."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_worker(row: str, cmd: list[str], env: dict) -> dict | None:
    """Run one row's worker ``cmd`` in a fresh process; the JSON it prints last (a failure is
    printed with the end of its stderr, and gives None)."""
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{row}: failed\n{r.stderr[-3000:]}", flush=True)
        return None
    result = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"{row}: {result}", flush=True)
    return result


def run_rows(rows, model_path: Path, inputs_path: Path, args) -> list[dict]:
    env = worker_env(args.threads)
    results = []
    for row in rows:
        python = sys.executable
        if row == "nemo":
            python = _nemo_python()
            if python is None:
                print("nemo: skipped (nemo_toolkit not importable here or from $MYNA_NEMO_PYTHON)", flush=True)
                continue
        cmd = [python, __file__, "--worker", row, "--model", str(model_path), "--inputs", str(inputs_path),
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", str(args.threads),
               "--device", args.device]
        result = run_worker(row, cmd, env)
        if result is not None:
            results.append(result)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {ROWS}")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=60, help="target tokens per utterance")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device (cuda: timed with synchronisation, "
                    "memory = torch's peak CUDA allocation)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.model, args.inputs, args.warmup, args.steps, args.threads,
                                 args.device)))
        return

    import numpy as np

    from myna.interop.nemo import save_nemo

    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {ROWS}")
    with tempfile.TemporaryDirectory(prefix="myna-train-step-") as tmp:
        cfg = small_config()
        model = build_myna(cfg, TOKENIZER)
        n_params = sum(p.numel() for p in model.parameters())
        model_path = save_nemo(model, Path(tmp) / "small.nemo", config=cfg)
        inputs_path = Path(tmp) / "batch.npz"
        np.savez(inputs_path, **make_batch(args.batch, args.seconds, args.tokens, vocab=128))
        print(f"Conformer-Transducer small: {n_params / 1e6:.1f}M parameters; batch {args.batch} x {args.seconds:g} s, "
              f"{args.tokens} tokens, {args.threads} threads; median of {args.steps} steps after {args.warmup} warm-up",
              flush=True)
        results = run_rows(rows, model_path, inputs_path, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    nemo = next((r for r in results if r["row"] == "nemo"), None)
    print()
    print("| row | step s | encoder fwd s | loss fwd s | backward s | AdamW s | peak RSS MB | loss | x NeMo |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        ratio = f"{r['step_s'] / nemo['step_s']:.3f}" if nemo else "-"
        print(f"| {r['row']} | {r['step_s']:.2f} | {r['enc_fwd_s']:.2f} | {r['loss_fwd_s']:.2f} | {r['backward_s']:.2f} "
              f"| {r['optim_s']:.2f} | {r['peak_mb']:.0f} | {r['loss']:.3f} | {ratio} |")
    if nemo and nemo.get("device", args.device) == "cpu":
        print("\nOn CPU, NeMo's row runs its default RNN-T loss (warprnnt_numba) through its CPU path: "
              "log_softmax, then a Python loop over T x (U+1). NeMo's users train on GPU, where the same "
              "loss runs numba CUDA kernels; the 'x NeMo' ratios compare with a path they never run.")


if __name__ == "__main__":
    main()
