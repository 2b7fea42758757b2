"""One table of accelerator timings: RNN-T loss, decoding and a training step, myna against its peers.

Normally started by ``benchmarks/gpu.sh`` (which installs the interpreters); it can also be run
directly with interpreters that exist already:

    python benchmarks/gpu.py --device cuda --peer-python /venvs/peers/bin/python \\
        --nemo-python /venvs/nemo/bin/python
    python benchmarks/gpu.py --dry-run            # CPU, tiny sizes: checks the plumbing only

Sections (each row in its own subprocess, same inputs on both sides):

- **loss**: ``benchmarks/rnnt_loss.py --device DEVICE`` at (B,T,S,C) = (8,250,60,500) and
  (16,500,120,500): myna's pruned pipeline (simple loss, ranges, pruning, pruned loss, backward)
  and full loss against fast_rnnt's (its CUDA kernels when it was built with CUDA). Memory on
  CUDA is torch's peak device allocation.
- **decode** (model-only): the same preloaded batches of the bundled espeak-ng digit strings
  (``data/espeak_digits/test.json``, sorted by length), timed from waveform through featurizer,
  encoder and search, after one untimed pass over all batches; RTFx = audio seconds / compute
  seconds. myna: ``myna.decoding.decode`` with ``greedy``, ``modified_beam`` 4 and
  ``beam`` 4; NeMo 3.0 (same ``.nemo`` file): ``greedy_batch``, ``maes`` 4 and ``malsd_batch`` 4
  through ``model.decoding.rnnt_decoder_predictions_tensor``. The table also counts the
  utterances whose transcripts are identical on both sides.
- **train**: ``benchmarks/train_step.py --device DEVICE``: one AdamW step of NeMo's "small"
  Conformer-Transducer (full and pruned loss) against NeMo 3.0 with the same weights.

The decode model is ``--decode-model`` (a ``.nemo`` both load; ``gpu.sh`` trains the dummy
ContextNet-Transducer of ``conf/contextnet_rnnt_dummy.yaml`` on the bundled data for it) or, without
one, NeMo's "small" Conformer-Transducer with seeded random weights: speed only, and only the
greedy rows then do the same work on both sides (a random joiner emits up to the cap of labels
per frame in both; beam searches over noise diverge). The notes give labels per audio second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
DIGITS = REPO / "data" / "espeak_digits"  # bundled: 100 test utterances of 1-5 spoken digits, 16 kHz
MYNA_DECODING = (("greedy", 1, "greedy"), ("greedy", 32, "greedy"), ("modified_beam", 32, "modified_beam 4"),
                 ("beam", 32, "beam 4"))
NEMO_DECODING = {"greedy": "greedy_batch", "modified_beam": "maes", "beam": "malsd_batch"}


# --------------------------------------------------------------------------- decode workers


def _load_batches(path: str, device: str):
    import numpy as np
    import torch

    data = np.load(path)
    batches = []
    for i in range(int(data["n"])):
        audio, lengths = torch.from_numpy(data[f"audio{i}"]), torch.from_numpy(data[f"lengths{i}"])
        batches.append((audio.to(device), lengths.to(device)))
    return batches, float(data["audio_seconds"])


def _timed_passes(run_batch, batches, device: str):
    """One untimed pass over all batches, then one timed pass; returns (seconds, texts)."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        for audio, lengths in batches:
            run_batch(audio, lengths)
        sync()
        began = time.perf_counter()
        texts = []
        for audio, lengths in batches:
            texts.extend(run_batch(audio, lengths))
        sync()
    return time.perf_counter() - began, texts


def decode_worker_myna(model_path: str, batches_dir: str, device: str, strategy: str, beam: int) -> dict:
    from myna.decoding import decode
    from myna.models.io import load_model

    model = load_model(model_path).to(device).eval()
    batches, seconds = _load_batches(batches_dir, device)

    labels = []

    def run_batch(audio, lengths):
        features, feature_lengths = model.featurize(audio, lengths)
        encoded, encoded_lengths = model.encoder(features, feature_lengths)
        hyps = decode(model, encoded, encoded_lengths, strategy=strategy, beam_size=beam)
        labels.append(sum(len(h.tokens) for h in hyps))
        return [h.text or "" for h in hyps]

    compute, texts = _timed_passes(run_batch, batches, device)
    per_second = sum(labels[len(batches):]) / seconds  # the timed pass
    return {"compute_s": compute, "rtfx": seconds / compute, "texts": texts, "labels_per_s": per_second}


def decode_worker_nemo(model_path: str, batches_dir: str, device: str, strategy: str, beam: int) -> dict:
    import copy
    import logging

    from nemo.collections.asr.models import ASRModel
    from nemo.utils import logging as nemo_logging
    from omegaconf import open_dict

    nemo_logging.setLevel(logging.ERROR)
    model = ASRModel.restore_from(model_path, map_location=device).eval()
    cfg = copy.deepcopy(model.cfg.decoding)
    with open_dict(cfg):
        cfg.strategy = NEMO_DECODING[strategy]
        if strategy != "greedy":  # change_decoding_strategy fills the other beam defaults
            cfg.beam = {**(cfg.get("beam") or {}), "beam_size": beam}
    model.change_decoding_strategy(cfg, verbose=False)
    batches, seconds = _load_batches(batches_dir, device)

    labels = []

    def run_batch(audio, lengths):
        features, feature_lengths = model.preprocessor(input_signal=audio, length=lengths)
        encoded, encoded_lengths = model.encoder(audio_signal=features, length=feature_lengths)
        out = model.decoding.rnnt_decoder_predictions_tensor(encoder_output=encoded, encoded_lengths=encoded_lengths)
        hyps = out[0] if isinstance(out, tuple) else out  # older NeMo returned (best, all)
        labels.append(sum(len(getattr(h, "y_sequence", ())) for h in hyps))
        return [h if isinstance(h, str) else (h.text or "") for h in hyps]

    compute, texts = _timed_passes(run_batch, batches, device)
    per_second = sum(labels[len(batches):]) / seconds  # the timed pass
    return {"compute_s": compute, "rtfx": seconds / compute, "texts": texts, "labels_per_s": per_second}


# --------------------------------------------------------------------------- parent side


def _run(cmd, env=None, timeout=3600) -> dict:
    """A worker's last stdout line as JSON, or {"error": last stderr line}."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(BENCH))
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:200]}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no result line"}


def _imports(python: str | None, module: str) -> bool:
    if not python:
        return False
    r = subprocess.run([python, "-c", f"import {module}"], capture_output=True, cwd=str(BENCH))
    return r.returncode == 0


def loss_rows(args, peer_python: str | None) -> list[dict]:
    """rnnt_loss.py on the device: myna and fast_rnnt, pruned and full."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loss.json"
        cmd = [sys.executable, str(BENCH / "rnnt_loss.py"), "--device", args.device, "--threads", "1",
               "--runs", str(args.runs), "--json", str(out),
               "--impl", "myna-pruned", "fast_rnnt-pruned", "myna-full", "fast_rnnt-full"]
        if args.dry_run:
            cmd += ["--quick", "--runs", "1", "--warmup", "0"]
        if peer_python:
            cmd += ["--peer-python", f"fast_rnnt={peer_python}"]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO))
        if r.returncode != 0 or not out.is_file():
            return [{"part": "loss", "row": "rnnt_loss.py", "error": (r.stderr.strip().splitlines() or ["?"])[-1]}]
        results = json.loads(out.read_text())
    by_key = {(tuple(x["shape"]), x["impl"]): x for x in results}
    rows = []
    for shape in sorted({tuple(x["shape"]) for x in results}):
        for kind in ("pruned", "full"):
            mine, peer = by_key.get((shape, f"myna-{kind}")), by_key.get((shape, f"fast_rnnt-{kind}"))
            name = f"{kind} loss + backward {shape}"
            rows.append(_pair("loss", name, mine, peer, "wall", "s", lower_is_better=True,
                              extra=lambda x: f"{x['peak_mb'] - x['start_mb']:.0f} MB" if x and "error" not in x else "-"))
    return rows


def decode_rows(args, nemo_python: str | None, work: Path) -> list[dict]:
    model_path = Path(args.decode_model) if args.decode_model else _small_model(work, args)
    batches = _write_batches(work, args)
    rows = []
    for strategy, batch_size, label in MYNA_DECODING:
        bdir = batches[batch_size]
        mine = _run([sys.executable, __file__, "--decode-worker", "myna", "--model", str(model_path),
                     "--batches", str(bdir), "--device", args.device, "--strategy", strategy, "--beam", "4"])
        peer = None
        if nemo_python:
            peer = _run([nemo_python, __file__, "--decode-worker", "nemo", "--model", str(model_path),
                         "--batches", str(bdir), "--device", args.device, "--strategy", strategy, "--beam", "4"])
        peer_label = NEMO_DECODING[strategy] + ("" if strategy == "greedy" else " 4")
        row = _pair("decode", f"{label} bs={batch_size} (NeMo {peer_label})", mine, peer, "rtfx", "RTFx",
                    lower_is_better=False, extra=lambda x: f"{x.get('labels_per_s', 0):.1f} labels/audio s")
        if "texts" in (mine or {}) and "texts" in (peer or {}):
            same = sum(a == b for a, b in zip(mine["texts"], peer["texts"]))
            row["peer_extra"] += f"; transcripts identical to myna's: {same}/{len(mine['texts'])}"
        rows.append(row)
    return rows


def train_rows(args, nemo_python: str | None, work: Path) -> list[dict]:
    out = work / "train.json"
    cmd = [sys.executable, str(BENCH / "train_step.py"), "--device", args.device, "--json", str(out)]
    if args.dry_run:
        cmd += ["--batch", "2", "--seconds", "2", "--tokens", "10", "--steps", "1", "--warmup", "1"]
    env = dict(os.environ)
    if nemo_python:
        env["MYNA_NEMO_PYTHON"] = nemo_python
    else:
        cmd += ["--rows", "myna-full,myna-pruned"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO))
    if r.returncode != 0 or not out.is_file():
        return [{"part": "train", "row": "train_step.py", "error": (r.stderr.strip().splitlines() or ["?"])[-1]}]
    results = {x["row"]: x for x in json.loads(out.read_text())}
    nemo = results.get("nemo")
    return [_pair("train", f"AdamW step, {row.replace('myna-', '')} loss (NeMo: its default loss)",
                  results.get(row), nemo, "step_s", "s", lower_is_better=True,
                  extra=lambda x: f"{x['peak_mb']:.0f} MB" if x and "error" not in x else "-")
            for row in ("myna-full", "myna-pruned")]


def _pair(part, name, mine, peer, key, unit, lower_is_better, extra) -> dict:
    row = {"part": part, "row": name, "unit": unit}
    for side, x in (("myna", mine), ("peer", peer)):
        if x is None:
            row[side] = "not run"
        elif "error" in x:
            row[side] = "failed: " + x["error"]
        else:
            row[side] = x[key]
            row[side + "_extra"] = extra(x)
    if isinstance(row.get("myna"), float) and isinstance(row.get("peer"), float):
        row["ratio"] = row["myna"] / row["peer"]
        row["better"] = "lower" if lower_is_better else "higher"
    return row


def _small_model(work: Path, args) -> Path:
    sys.path.insert(0, str(BENCH))
    from train_step import TOKENIZER, build_myna, small_config

    from myna.interop.export import save_nemo

    path = work / "small.nemo"
    if not path.is_file():
        cfg = small_config()
        if args.dry_run:  # a tiny model: plumbing only
            cfg["encoder"].update(n_layers=2, d_model=64)
        save_nemo(build_myna(cfg, TOKENIZER), path, config=cfg)
    return path


def _write_batches(work: Path, args) -> dict:
    """Identical preloaded batches for both sides: {batch_size: npz path}."""
    import numpy as np

    from myna.audio import load_audio
    from myna.evaluate import pad_batch

    count = 2 if args.dry_run else args.num_utterances
    with open(DIGITS / "test.json", encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()][:count]
    waves = [load_audio(DIGITS / e["audio_filepath"], 16000) for e in entries]
    waves.sort(key=len)  # the same order for both sides; sorted, as both tools' users would batch
    seconds = sum(len(w) for w in waves) / 16000
    paths = {}
    for batch_size in sorted({b for _, b, _ in MYNA_DECODING}):
        arrays = {"n": 0, "audio_seconds": seconds}
        for i, start in enumerate(range(0, len(waves), batch_size)):
            audio, lengths = pad_batch(waves[start:start + batch_size])
            arrays[f"audio{i}"], arrays[f"lengths{i}"] = audio.numpy(), lengths.numpy()
            arrays["n"] = i + 1
        paths[batch_size] = work / f"batches_bs{batch_size}.npz"
        np.savez(paths[batch_size], **arrays)
    return paths


def format_table(rows, header: str) -> str:
    lines = [header, "", "| part | row | myna | peer | myna / peer | notes (myna; peer) |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['part']} | {r['row']} | failed: {r['error']} | | | |")
            continue

        def cell(side):
            v = r.get(side)
            return f"{v:.3f} {r['unit']}" if isinstance(v, float) else str(v)

        ratio = f"{r['ratio']:.2f}x ({r['better']} is better)" if "ratio" in r else "-"
        notes = f"{r.get('myna_extra', '-')}; {r.get('peer_extra', '-')}"
        lines.append(f"| {r['part']} | {r['row']} | {cell('myna')} | {cell('peer')} | {ratio} | {notes} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes, one run each: checks that everything runs")
    ap.add_argument("--parts", default="loss,decode,train", help="comma-separated subset of loss,decode,train")
    ap.add_argument("--peer-python", help="interpreter that imports fast_rnnt (default: this one if it does)")
    ap.add_argument("--nemo-python", help="interpreter that imports nemo.collections.asr")
    ap.add_argument("--decode-model", help=".nemo file for the decode rows (default: NeMo-small, random weights)")
    ap.add_argument("--num-utterances", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--decode-worker", choices=("myna", "nemo"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--batches", help=argparse.SUPPRESS)
    ap.add_argument("--strategy", help=argparse.SUPPRESS)
    ap.add_argument("--beam", type=int, default=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.decode_worker:
        fn = decode_worker_myna if args.decode_worker == "myna" else decode_worker_nemo
        print(json.dumps(fn(args.model, args.batches, args.device, args.strategy, args.beam)))
        return 0

    peer_python = args.peer_python or (sys.executable if _imports(sys.executable, "fast_rnnt") else None)
    nemo_python = args.nemo_python if _imports(args.nemo_python, "nemo.collections.asr") else None
    parts = [p for p in args.parts.split(",") if p]
    rows = []
    with tempfile.TemporaryDirectory(prefix="myna-gpu-") as tmp:
        for part in parts:
            began = time.perf_counter()
            if part == "loss":
                rows += loss_rows(args, peer_python)
            elif part == "decode":
                rows += decode_rows(args, nemo_python, Path(tmp))
            elif part == "train":
                rows += train_rows(args, nemo_python, Path(tmp))
            else:
                raise SystemExit(f"unknown part {part!r}; choose from loss, decode, train")
            print(f"# {part}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    header = (f"myna vs peers on {args.device} ({name}); torch {torch.__version__}"
              f"{'; DRY RUN (tiny sizes, numbers mean nothing)' if args.dry_run else ''}; "
              f"peer: fast_rnnt for loss ({'found' if peer_python else 'missing'}), NeMo 3.0 for decode and train "
              f"({'found' if nemo_python else 'missing'})")
    print(format_table(rows, header))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
