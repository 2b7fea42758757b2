"""Decoding speed (RTFx) and WER, myna (each inference backend) against NeMo 3.0, doing the same work.

Test sets (real speech, FSDD's official *test* clips, 8 kHz, never heard in training):

- ``strings``: ``--num-strings`` strings of 1-5 digits joined from the test clips with short
  silences by :func:`myna.data.prepare.fsdd.make_digit_strings` (seed 1234), written once to
  ``--work-dir``;
- ``isolated``: the 300 isolated test clips (``myna data prepare fsdd``'s ``test.json``).

Two kinds of row, both sides doing the same work (the table prints which):

- **model-only**: the waveforms are read and resampled once, before any timing, by myna's
  loader, and cut into the *same* batches in manifest order (no sorting on either side); each
  side gets the identical padded tensors (NeMo's worker loads them from a ``torch.save`` file).
  Timed: features -> encoder -> search, per batch, summed. NeMo runs ``model.preprocessor``,
  ``model.encoder`` and ``model.decoding.rnnt_decoder_predictions_tensor`` under
  ``torch.inference_mode`` -- its own pipeline, without ``transcribe``'s data loader. NeMo's
  model-only rows all run before its first ``transcribe`` call: once ``transcribe`` has run in a
  process, NeMo 3.0's greedy search returns other texts for the same tensors.
- **end-to-end**: a list of file paths in, texts out, timed around one documented Python call:
  myna ``with_backend(model, b).transcribe(paths, batch_size=N)`` (``model.transcribe`` for
  eager), NeMo ``model.transcribe(paths, batch_size=N)`` (its defaults: ``num_workers=0``,
  the files in the order given). File reading and resampling (8 -> 16 kHz) are inside the timer
  on both sides.

Same protocol on both sides: ``--threads`` intra-op threads (torch and onnxruntime), one
untimed warm-up pass over all the data, then ``--repeats`` timed passes; the best pass is
reported. RTFx = seconds of audio / seconds of the pass. WER is corpus WER of the timed pass's
texts against the digit words. Each backend is prepared (compiled, quantized, exported) before
the warm-up; preparation time is printed, not counted.

NeMo (optional, never a myna dependency) runs in its own interpreter ``--nemo-python`` on the
``--nemo-model`` file (``myna export-nemo`` of the same model); without it the NeMo rows say
"skipped". Beam rows (``--beam``): greedy, ``beam`` (batched ALSD, several labels per frame),
``modified_beam`` (one label per frame) at beam 4 for myna; ``malsd_batch`` and ``maes`` at
beam 4 for NeMo; model-only, batch 32.

    python benchmarks/decoding.py --model exp/strings/strings.nemo --nemo-model exp/strings/strings_nemo.nemo \\
        --nemo-python /work/peers/nemo/bin/python --backends eager,compile,int8,onnx --batch-sizes 1,32
    python benchmarks/decoding.py --model M.nemo --nemo-model N.nemo --nemo-python P --beam --set isolated
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

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_FSDD = (REPO_ROOT / ".." / "shared" / "data" / "fsdd").resolve()


# ---------------------------------------------------------------- data
def prepare_set(name: str, fsdd_dir: Path, work_dir: Path, num_strings: int) -> Path:
    """The manifest of test set ``name`` (``strings`` or ``isolated``), written once under ``work_dir``."""
    from myna.data.prepare.fsdd import make_digit_strings, prepare_fsdd, read_fsdd_split

    if name == "isolated":
        manifest = work_dir / "fsdd" / "test.json"
        if not manifest.is_file():
            prepare_fsdd(fsdd_dir, work_dir / "fsdd")
        return manifest
    out = work_dir / f"fsdd_test_strings_{num_strings}"
    manifest = out / "manifest.json"
    if not manifest.is_file():
        make_digit_strings(read_fsdd_split(fsdd_dir, "test"), out, num_strings, min_words=1, max_words=5, seed=1234)
    return manifest


def preload_batches(manifest: Path, sample_rate: int, batch_size: int, limit: int = 0):
    """Waveforms read once, in manifest order, as padded batches [(audio (B, L), lengths (B,))];
    ``limit`` > 0 keeps the first ``limit`` utterances only."""
    from myna.data.loader import load_entry_audio
    from myna.data.manifest import read_manifest
    from myna.models.base import pad_batch

    entries = read_manifest(manifest)
    entries = entries[:limit] if limit > 0 else entries
    waves = [load_entry_audio(e, sample_rate) for e in entries]
    batches = [pad_batch(waves[i:i + batch_size]) for i in range(0, len(waves), batch_size)]
    audio_s = sum(w.shape[0] for w in waves) / sample_rate
    return batches, [e.text for e in entries], [str(e.audio_filepath) for e in entries], audio_s


def best_of(run, repeats: int):
    """Run ``run()`` once untimed (warm-up), then ``repeats`` times; (best seconds, last output)."""
    run()
    best, out = float("inf"), None
    for _ in range(repeats):
        began = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - began)
    return best, out


# ---------------------------------------------------------------- myna side
def myna_rows(args, manifest: Path, set_name: str) -> list[dict]:
    import torch

    import myna
    from myna.decoding import decode
    from myna.decoding.backends import with_backend

    model = myna.load(args.model).eval()
    rate = model.sample_rate
    rows = []
    if args.beam:
        jobs = [("eager", "greedy", 32), ("eager", "beam", 32), ("eager", "modified_beam", 32)]
    else:
        jobs = [(b, "greedy", n) for b in args.backends.split(",") for n in map(int, args.batch_sizes.split(","))]
    prepared = {}
    for backend, strategy, batch_size in jobs:
        if backend not in prepared:
            began = time.perf_counter()
            prepared[backend] = with_backend(model, backend)
            print(f"myna {backend}: prepared in {time.perf_counter() - began:.1f} s", flush=True)
        runner = prepared[backend]
        batches, refs, paths, audio_s = preload_batches(manifest, rate, batch_size, args.limit)
        options = {"strategy": strategy, "beam_size": args.beam_size}

        def model_only():
            texts = []
            with torch.inference_mode():
                for audio, lengths in batches:
                    features, feature_lengths = runner.featurize(audio, lengths)
                    encoded, encoded_lengths = runner.encoder(features, feature_lengths)
                    texts += [h.text or "" for h in decode(runner, encoded, encoded_lengths, **options)]
            return texts

        seconds, texts = best_of(model_only, args.repeats)
        rows.append(_row("myna", backend, "model-only", strategy, batch_size, audio_s, seconds, refs, texts, set_name))
        print(_format(rows[-1]), flush=True)
        if args.beam:
            continue

        def end_to_end():
            if backend == "eager":
                return [str(t) for t in model.transcribe(paths, batch_size=batch_size)]
            return [str(t) for t in runner.transcribe(paths, batch_size=batch_size)]

        seconds, texts = best_of(end_to_end, args.repeats)
        rows.append(_row("myna", backend, "end-to-end", strategy, batch_size, audio_s, seconds, refs, texts, set_name))
        print(_format(rows[-1]), flush=True)
    return rows


def _row(impl, backend, kind, strategy, batch_size, audio_s, seconds, refs, texts, set_name) -> dict:
    from myna.metrics import error_rates

    return {"impl": impl, "backend": backend, "kind": kind, "decoding": strategy, "batch_size": batch_size,
            "set": set_name, "audio_s": audio_s, "seconds": seconds, "rtfx": audio_s / seconds,
            "wer": error_rates(refs, texts).wer, "utterances": len(refs)}


# ---------------------------------------------------------------- NeMo side (runs in NeMo's interpreter)
def nemo_worker(spec_path: str) -> int:
    """Time NeMo on the batches and paths in the spec; print one JSON line per row."""
    import logging

    import torch

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    logging.disable(logging.WARNING)
    from nemo.collections.asr.models import ASRModel  # noqa: the peer, in its own venv
    from nemo.utils import logging as nemo_logging

    nemo_logging.setLevel(logging.ERROR)
    model = ASRModel.restore_from(spec["model"], map_location="cpu").eval()
    # Every model-only row before any end-to-end row: after NeMo's transcribe() has run once in a
    # process, its greedy search gives other texts on the same tensors (46 of the 100 digit strings
    # at batch 32 in our check), so model-only rows must not follow a transcribe() call.
    for kind_wanted in ("model-only", "end-to-end"):
        nemo_jobs(model, spec, kind_wanted)
    return 0


def nemo_jobs(model, spec: dict, kind_wanted: str) -> None:
    """Run the rows of one kind (``model-only`` or ``end-to-end``) of every job in NeMo; print them."""
    import torch
    from omegaconf import open_dict

    for job in spec["jobs"]:
        if kind_wanted == "end-to-end" and not job["end_to_end"]:
            continue
        cfg = model.cfg.decoding  # noqa: the peer's config, in its own venv
        with open_dict(cfg):
            cfg.strategy = job["strategy"]
            if job["strategy"] != "greedy_batch":
                cfg.beam.beam_size = spec["beam_size"]
                cfg.beam.return_best_hypothesis = True
        model.change_decoding_strategy(cfg, verbose=False)
        batches = torch.load(job["batches"])

        def model_only():
            texts = []
            with torch.inference_mode():
                for audio, lengths in batches:
                    features, feature_lengths = model.preprocessor(input_signal=audio, length=lengths)
                    encoded, encoded_lengths = model.encoder(audio_signal=features, length=feature_lengths)
                    hyps = model.decoding.rnnt_decoder_predictions_tensor(
                        encoder_output=encoded, encoded_lengths=encoded_lengths, return_hypotheses=False)
                    hyps = hyps[0] if isinstance(hyps, tuple) else hyps
                    texts += [h.text if hasattr(h, "text") else str(h) for h in hyps]
            return texts

        def end_to_end():
            out = model.transcribe(spec["paths"], batch_size=job["batch_size"], verbose=False)
            out = out[0] if isinstance(out, tuple) else out
            return [h.text if hasattr(h, "text") else str(h) for h in out]

        run = model_only if kind_wanted == "model-only" else end_to_end
        seconds, texts = best_of(run, spec["repeats"])
        print("ROW " + json.dumps({"kind": kind_wanted, "decoding": job["name"], "batch_size": job["batch_size"],
                                   "seconds": seconds, "texts": texts}), flush=True)


def nemo_rows(args, manifest: Path, set_name: str, sample_rate: int) -> list[dict]:
    import torch

    from myna.metrics import error_rates

    with tempfile.TemporaryDirectory(prefix="myna_dec_bench_") as tmp:
        jobs = []
        if args.beam:
            setups = [("greedy_batch", "greedy", 32), ("malsd_batch", "malsd_batch", 32), ("maes", "maes", 32)]
        else:
            setups = [("greedy_batch", "greedy", n) for n in map(int, args.batch_sizes.split(","))]
        refs = paths = audio_s = None
        for strategy, name, batch_size in setups:
            batches, refs, paths, audio_s = preload_batches(manifest, sample_rate, batch_size, args.limit)
            file = Path(tmp) / f"batches_{batch_size}.pt"
            torch.save(batches, file)
            jobs.append({"strategy": strategy, "name": name, "batch_size": batch_size, "batches": str(file),
                         "end_to_end": not args.beam})
        spec = {"model": str(Path(args.nemo_model).resolve()), "threads": args.threads, "repeats": args.repeats,
                "beam_size": args.beam_size, "paths": [str(Path(p).resolve()) for p in paths], "jobs": jobs}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        proc = subprocess.run([args.nemo_python, __file__, "--nemo-worker", str(Path(tmp) / "spec.json")],
                              capture_output=True, text=True, env=env)
    rows = []
    for line in proc.stdout.splitlines():
        if line.startswith("ROW "):
            r = json.loads(line[4:])
            rows.append({"impl": "nemo", "backend": "eager", "kind": r["kind"], "decoding": r["decoding"],
                         "batch_size": r["batch_size"], "set": set_name, "audio_s": audio_s, "seconds": r["seconds"],
                         "rtfx": audio_s / r["seconds"], "wer": error_rates(refs, r["texts"]).wer,
                         "utterances": len(refs)})
            print(_format(rows[-1]), flush=True)
    if proc.returncode != 0 or not rows:
        print(f"nemo: failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-3:]}")
    return rows


def _format(r: dict) -> str:
    return (f"{r['impl']:5} {r['backend']:8} {r['kind']:11} {r['decoding']:14} {r['batch_size']:5d} "
            f"{r['rtfx']:8.1f} {100 * r['wer']:7.2f}")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--nemo-worker":
        return nemo_worker(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="trained myna Transducer (.nemo)")
    parser.add_argument("--nemo-model", help="the same model exported with `myna export-nemo`, for NeMo's rows")
    parser.add_argument("--nemo-python", default=os.environ.get("MYNA_NEMO_PYTHON"),
                        help="interpreter with nemo_toolkit (default $MYNA_NEMO_PYTHON)")
    parser.add_argument("--set", default="strings", choices=["strings", "isolated"])
    parser.add_argument("--fsdd-dir", default=str(DEFAULT_FSDD))
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "myna_decoding_bench"))
    parser.add_argument("--num-strings", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default="eager,compile,int8,onnx")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--beam", action="store_true", help="the beam-search rows instead of the backend rows")
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use the first N utterances only (0: all)")
    parser.add_argument("--no-nemo", action="store_true")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)

    if not args.model or not Path(args.model).is_file():
        print(f"skipped: no trained model (--model {args.model!r}); see the docstring")
        return 0
    if not Path(args.fsdd_dir, "splits", "test.tsv").is_file():
        print(f"skipped: FSDD not found at {args.fsdd_dir}")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    manifest = prepare_set(args.set, Path(args.fsdd_dir), Path(args.work_dir), args.num_strings)
    load = os.getloadavg()[0]
    print(f"{'impl':5} {'backend':8} {'kind':11} {'decoding':14} {'batch':>5} {'RTFx':>8} {'WER %':>7}")
    rows = myna_rows(args, manifest, args.set)
    if args.no_nemo or not args.nemo_python or not args.nemo_model:
        print("nemo: skipped (give --nemo-python and --nemo-model)")
    else:
        import myna

        rows += nemo_rows(args, manifest, args.set, myna.load(args.model).sample_rate)
    print(f"\n{rows[0]['utterances']} utterances ({args.set}), {rows[0]['audio_s']:.1f} s of audio, "
          f"{args.threads} threads, best of {args.repeats} after a warm-up pass; "
          f"1-min load {load:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print("| impl | backend | timed work | decoding | batch | RTFx | WER % |\n|---|---|---|---|--:|--:|--:|")
    for r in rows:
        print(f"| {r['impl']} | {r['backend']} | {r['kind']} | {r['decoding']} | {r['batch_size']} | "
              f"{r['rtfx']:.1f} | {100 * r['wer']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
