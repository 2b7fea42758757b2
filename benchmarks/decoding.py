"""Decoding speed (RTFx) and WER on FSDD digit strings: greedy, modified beam, beam; NeMo alongside.

Test audio: ``--num-strings`` strings of 1-5 digits joined from FSDD's official *test* clips
(real speech, 8 kHz, resampled to the model's rate on loading) by
:func:`myna.data.prepare.fsdd.make_digit_strings`, written once to ``--work-dir``.

Rows (each over the same manifest, in this process, after one warm-up batch):

- ``greedy  bs=1``   batched greedy search, one utterance per batch;
- ``greedy  bs=32``  the same, 32 utterances per batch;
- ``modified_beam 4`` / ``beam 4`` (ALSD), batches of 32;
- with ``--lm``: ``modified_beam 4 + LM``.

RTFx = seconds of audio / seconds of compute (featurizer + encoder + search; audio reading
excluded), on CPU with ``--threads`` intra-op threads. WER is corpus WER against the digit words.

NeMo (optional, not a dependency): when ``nemo_toolkit`` is importable, the same ``.nemo`` file
(``--nemo-model`` if myna's file is not NeMo-loadable) is restored with
``ASRModel.restore_from`` and timed on the same audio with ``change_decoding_strategy``:
``greedy_batch`` (bs 1 and 32) and ``beam`` with ``search_type`` ``maes``/``alsd`` (beam 4),
using ``transcribe(paths, batch_size=...)`` (its timing includes audio reading, which favours
myna slightly; the number of files is the same). Without NeMo those rows say "skipped".

    python benchmarks/decoding.py --model exp/dummy/contextnet_rnnt_dummy.nemo
    python benchmarks/decoding.py --model M.nemo --num-strings 200 --lm digits.arpa --lm-weight 0.3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_FSDD = (REPO_ROOT / ".." / "shared" / "data" / "fsdd").resolve()


def _prepare_strings(fsdd_dir: Path, work_dir: Path, num_strings: int) -> Path:
    from myna.data.prepare.fsdd import make_digit_strings, read_fsdd_split

    out = work_dir / f"fsdd_test_strings_{num_strings}"
    manifest = out / "manifest.json"
    if not manifest.is_file():
        entries = read_fsdd_split(fsdd_dir, "test")
        make_digit_strings(entries, out, num_strings, min_words=1, max_words=5, seed=1234)
    return manifest


def _run_myna(model, manifest: Path, name: str, batch_size: int, **options) -> dict:
    from myna.evaluate import evaluate_manifest

    evaluate_manifest(model, manifest, batch_size=batch_size, progress=False, **options)  # warm-up
    result = evaluate_manifest(model, manifest, batch_size=batch_size, progress=False, **options)
    return {"impl": "myna", "decoding": name, "batch_size": batch_size, "rtfx": result.rtfx,
            "wer": result.rates.wer, "utterances": result.num_utterances, "audio_s": result.audio_seconds}


def _run_nemo(path: Path, manifest: Path) -> list[dict]:
    """Time NeMo's decoding of the same audio (only when nemo_toolkit is installed)."""
    from nemo.collections.asr.models import ASRModel  # noqa: optional peer
    from omegaconf import open_dict

    from myna.data.manifest import read_manifest
    from myna.metrics import error_rates

    entries = read_manifest(manifest)
    paths = [str(e.audio_filepath) for e in entries]
    refs = [e.text for e in entries]
    audio_s = sum(e.duration for e in entries)
    model = ASRModel.restore_from(str(path), map_location="cpu").eval()
    rows = []
    setups = [("greedy", 1, {"strategy": "greedy_batch"}), ("greedy", 32, {"strategy": "greedy_batch"}),
              ("maes 4", 32, {"strategy": "maes", "beam": {"beam_size": 4}}),
              ("alsd 4", 32, {"strategy": "beam", "beam": {"beam_size": 4, "search_type": "alsd"}})]
    for name, batch_size, change in setups:
        cfg = model.cfg.decoding
        with open_dict(cfg):
            cfg.strategy = change["strategy"]
            for key, value in change.get("beam", {}).items():
                cfg.beam[key] = value
        model.change_decoding_strategy(cfg)
        model.transcribe(paths[:batch_size], batch_size=batch_size)  # warm-up
        began = time.perf_counter()
        out = model.transcribe(paths, batch_size=batch_size)
        seconds = time.perf_counter() - began
        hyps = out[0] if isinstance(out, tuple) else out
        texts = [h.text if hasattr(h, "text") else str(h) for h in hyps]
        rows.append({"impl": "nemo", "decoding": name, "batch_size": batch_size, "rtfx": audio_s / seconds,
                     "wer": error_rates(refs, texts).wer, "utterances": len(paths), "audio_s": audio_s,
                     "texts": texts})
    return rows


def _same_greedy_transcripts(model, nemo_path: Path, manifest: Path) -> tuple[int, int]:
    """How many greedy transcripts agree when NeMo and myna decode the very same waveforms.

    NeMo's ``transcribe`` reads and resamples audio its own way (librosa), which alone can flip a
    word now and then; feeding both models myna's waveforms isolates the models themselves.
    """
    import torch
    from nemo.collections.asr.models import ASRModel  # noqa: optional peer

    from myna.data.loader import load_entry_audio
    from myna.data.manifest import read_manifest
    from myna.models.base import pad_batch

    nemo_model = ASRModel.restore_from(str(nemo_path), map_location="cpu").eval()
    entries = read_manifest(manifest)
    rate = int(model.preprocessor.sample_rate)
    same = 0
    for start in range(0, len(entries), 32):
        audio, lengths = pad_batch([load_entry_audio(e, rate) for e in entries[start:start + 32]])
        with torch.no_grad():
            encoded, encoded_lengths = nemo_model(input_signal=audio, input_signal_length=lengths)
            theirs = nemo_model.decoding.rnnt_decoder_predictions_tensor(
                encoder_output=encoded, encoded_lengths=encoded_lengths, return_hypotheses=True)
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
        same += sum(a.text == b.text for a, b in zip(theirs, model.transcribe_batch(audio, lengths)))
    return same, len(entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="trained Transducer model file (.nemo layout)")
    parser.add_argument("--nemo-model", help="file for NeMo's rows if --model is not NeMo-loadable")
    parser.add_argument("--fsdd-dir", default=str(DEFAULT_FSDD))
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "myna_decoding_bench"),
                        help="where the digit strings are written (once)")
    parser.add_argument("--num-strings", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lm", help="optional ARPA n-gram for an extra shallow-fusion row")
    parser.add_argument("--lm-weight", type=float, default=0.3)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)

    if not args.model or not Path(args.model).is_file():
        print(f"skipped: no trained model (--model {args.model!r}); train one, e.g. "
              "`myna train conf/contextnet_rnnt_dummy.yaml ...`, and pass its .nemo file")
        return 0
    if not Path(args.fsdd_dir, "splits", "test.tsv").is_file():
        print(f"skipped: FSDD not found at {args.fsdd_dir}")
        return 0

    import torch

    from myna.interop.nemo import load_nemo

    torch.set_num_threads(args.threads)
    manifest = _prepare_strings(Path(args.fsdd_dir), Path(args.work_dir), args.num_strings)
    model = load_nemo(args.model)
    rows = [
        _run_myna(model, manifest, "greedy", 1, strategy="greedy"),
        _run_myna(model, manifest, "greedy", 32, strategy="greedy"),
        _run_myna(model, manifest, "modified_beam 4", 32, strategy="modified_beam", beam_size=4),
        _run_myna(model, manifest, "beam (alsd) 4", 32, strategy="beam", beam_size=4),
    ]
    if args.lm:
        rows.append(_run_myna(model, manifest, f"modified_beam 4 + LM {args.lm_weight}", 32,
                              strategy="modified_beam", beam_size=4, lm=args.lm, lm_weight=args.lm_weight))
    if importlib.util.find_spec("nemo") is not None:
        try:
            nemo_rows = _run_nemo(Path(args.nemo_model or args.model), manifest)
            rows.extend(nemo_rows)
            same, total = _same_greedy_transcripts(model, Path(args.nemo_model or args.model), manifest)
            print(f"greedy transcripts identical to NeMo's greedy_batch on the same waveforms: {same}/{total}")
        except Exception as err:  # a peer failing must not hide myna's numbers
            print(f"nemo: failed ({type(err).__name__}: {err})")
    else:
        print("nemo: skipped (nemo_toolkit not installed; see benchmarks/install_peers.sh)")

    audio = rows[0]["audio_s"]
    print(f"\n{rows[0]['utterances']} FSDD digit strings, {audio:.1f} s of audio, {args.threads} threads, "
          f"model {args.model}")
    print(f"{'impl':6} {'decoding':28} {'batch':>5} {'RTFx':>8} {'WER %':>7}")
    for r in rows:
        print(f"{r['impl']:6} {r['decoding']:28} {r['batch_size']:5d} {r['rtfx']:8.1f} {100 * r['wer']:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps([{k: v for k, v in r.items() if k != "texts"} for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
