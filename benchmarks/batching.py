"""Padding and batches per epoch of myna's batching strategies; loader throughput from tar shards vs loose files.

    python benchmarks/batching.py [--utterances 20000] [--batch-size 16] [--audio DIR] [--workers 2]

Part 1 (no audio read) batches 20,000 synthetic durations and reports the padding fraction
(padded frames / total frames, 10 ms frames) and the batches per epoch of:
random batches; semi-sorted batches (NeMo's SemiSortBatchSampler, randomization_factor 0.1);
static bucketing with 4 and 8 equal-width duration buckets (``myna data tar --buckets_num``'s
split, random order inside a bucket); Lhotse dynamic bucketing with 30 buckets (bins estimated
by Lhotse), its ``batch_duration`` set to the mean seconds of a fixed-size batch so the batch
count is comparable.

The durations imitate LibriSpeech train-960 (281k utterances, 1-35 s, mean about 12.3 s; from
memory of ``lhotse cut describe`` on it, std about 3.7 s, quartiles about 11.4 / 14.1 / 15.3 s and
99% below about 17-18 s: the segmentation prefers ~15 s pieces, short ones are chapter ends). It
is a seeded mixture of 75% normal(13.9, 1.4) clipped to [10.5, 17.5], 24% short 1-11 s
(1 + 10 * beta(2, 1.3)) and 1% long 17.5-35 s (17.5 + exponential(3), clipped; the longest set to
the 35 s cap). The printed mean, quantiles and range show what was used.

Part 2 reads real audio (default: ../shared/data/fsdd/recordings, 3,000 8 kHz WAVs, else the
bundled data/espeak_digits): the same utterances, once as loose files through a manifest and
once from 8 tar shards written by ``write_tarred_dataset``, with ``--workers`` DataLoader
workers and random batches of ``--loader-batch-size``; utterances per second over whole epochs
(best and median of ``--repeats``, the two loaders alternating after a warm-up pass each, files in
the page cache for both).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from myna.data.sampling import min_padding_duration_bins, DistributedBatchSampler, SemiSortBatchSampler  # noqa: E402

FRAME = 0.01  # seconds per frame for the padding count


def librispeech_like_durations(n: int, seed: int = 0) -> np.ndarray:
    """n durations (seconds) shaped like LibriSpeech train-960's (see the module docstring)."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n, p=[0.75, 0.24, 0.01])
    main = np.clip(rng.normal(13.9, 1.4, n), 10.5, 17.5)
    short = 1.0 + 10.0 * rng.beta(2.0, 1.3, n)
    long = np.clip(17.5 + rng.exponential(3.0, n), 17.5, 35.0)
    d = np.round(np.select([kind == 0, kind == 1], [main, short], long), 2)
    d[np.argmax(d)] = 35.0  # the longest segments reach the 35 s cap
    return d


def padding_fraction(batches: list[list[int]], durations: np.ndarray) -> float:
    frames = np.ceil(durations / FRAME)
    real = sum(frames[b].sum() for b in batches)
    total = sum(len(b) * frames[b].max() for b in batches)
    return 1.0 - real / total


def static_buckets(durations: np.ndarray, num_buckets: int, batch_size: int, seed: int) -> list[list[int]]:
    low, high = durations.min(), durations.max()
    width = (high - low) / num_buckets
    bucket = np.minimum(((durations - low) / width).astype(int), num_buckets - 1)
    batches = []
    for b in range(num_buckets):
        members = np.flatnonzero(bucket == b)
        if len(members):
            sampler = DistributedBatchSampler(durations[members], batch_size, seed=seed + b)
            batches.extend([members[i].tolist() for i in batch] for batch in sampler.batches())
    return batches


def lhotse_dynamic(durations: np.ndarray, num_buckets: int, batch_duration: float, seed: int,
                   duration_bins: list[float] | None = None) -> tuple[list[list[int]], list[float]]:
    from myna.data.lhotse_io import CutSet, DynamicBucketingSampler, MonoCut, Recording
    from lhotse.audio import AudioSource

    cuts = []
    for i, d in enumerate(durations):
        rec = Recording(id=str(i), sources=[AudioSource("file", [0], f"{i}.wav")], sampling_rate=16000,
                        num_samples=int(round(d * 16000)), duration=float(d))
        cuts.append(MonoCut(id=str(i), start=0.0, duration=float(d), channel=0, recording=rec))
    with warnings.catch_warnings():  # an in-memory CutSet is fine for 20k metadata-only cuts
        warnings.simplefilter("ignore", UserWarning)
        sampler = DynamicBucketingSampler(CutSet(cuts), max_duration=batch_duration, num_buckets=num_buckets,
                                          shuffle=True, seed=seed, num_cuts_for_bins_estimate=len(cuts),
                                          buffer_size=20000, duration_bins=duration_bins)
        batches = [[int(c.id) for c in batch] for batch in sampler]
    return batches, list(sampler.duration_bins)


def part1(n: int, batch_size: int, seed: int) -> None:
    d = librispeech_like_durations(n, seed)
    print(f"## Padding and batches per epoch: {n} LibriSpeech-960-like durations")
    q = np.percentile(d, [25, 50, 75, 99])
    print(f"durations: mean {d.mean():.2f} s, std {d.std():.2f} s, min {d.min():.2f} s, quantiles 25/50/75/99% "
          f"{q[0]:.1f}/{q[1]:.1f}/{q[2]:.1f}/{q[3]:.1f} s, max {d.max():.2f} s, total {d.sum() / 3600:.1f} h\n")
    rows = []
    t = time.perf_counter()
    rows.append(("random", DistributedBatchSampler(d, batch_size, seed=seed).batches(), f"batch_size={batch_size}"))
    rows.append(("semi-sorted (randomization_factor=0.1)", SemiSortBatchSampler(d, batch_size, seed=seed).batches(),
                 f"batch_size={batch_size}"))
    for k in (4, 8):
        rows.append((f"static bucketing, {k} buckets", static_buckets(d, k, batch_size, seed), f"batch_size={batch_size}"))
    batch_duration = round(batch_size * float(d.mean()))
    for k in (30, 60):
        batches, found = lhotse_dynamic(d, k, batch_duration, seed)
        bins = found if k == 30 else bins
        rows.append((f"Lhotse dynamic bucketing, {k} buckets", batches, f"batch_duration={batch_duration}"))
    # The same sampler with padding-minimising bins (myna data estimate-bins --method padding).
    padding_bins = min_padding_duration_bins(d, 30)
    batches, _ = lhotse_dynamic(d, len(padding_bins) + 1, batch_duration, seed, duration_bins=padding_bins)
    rows.append(("Lhotse dynamic bucketing, 30 buckets, min-padding bins", batches, f"batch_duration={batch_duration}"))
    print("| strategy | batch setting | batches/epoch | padding fraction |")
    print("|---|---|---:|---:|")
    for name, b, setting in rows:
        assert sorted(i for x in b for i in x) == list(range(n)), name
        print(f"| {name} | {setting} | {len(b)} | {100 * padding_fraction(b, d):.2f}% |")
    print(f"\n(part 1 took {time.perf_counter() - t:.1f} s; Lhotse estimated {len(bins) + 1} buckets, bins "
          f"{[round(float(b), 2) for b in bins[:3]]} ... {[round(float(b), 2) for b in bins[-3:]]})\n")


def _audio_manifest(audio_dir: Path, out: Path) -> Path:
    import soundfile as sf

    manifest = audio_dir.parent / "train.json"
    if (audio_dir.parent / "train.json").is_file() and audio_dir.name == "audio":
        return manifest  # the bundled espeak digits corpus
    lines = []
    for path in sorted(audio_dir.glob("*.wav")):
        info = sf.info(str(path))
        lines.append(json.dumps({"audio_filepath": str(path.resolve()), "duration": info.frames / info.samplerate,
                                 "text": path.stem.split("_")[0]}))
    manifest = out / "loose.json"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _epoch_rate(loader) -> tuple[float, int]:
    start = time.perf_counter()
    count = sum(b["audio"].shape[0] for b in loader)
    return count / (time.perf_counter() - start), count


def part2(audio_dir: Path, workers: int, batch_size: int, repeats: int) -> None:
    from myna.data.factory import build_loader
    from myna.data.tarred import write_tarred_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = _audio_manifest(audio_dir, tmp)
        [report] = write_tarred_dataset(manifest, tmp / "tarred", num_shards=8, shuffle=True, shuffle_seed=0)
        common = {"sample_rate": 16000, "batch_size": batch_size, "shuffle": True, "num_workers": workers}
        loose = build_loader({**common, "manifest_filepath": str(manifest)}, None, train=True, seed=0, name="loose")
        tarred = build_loader({**common, "manifest_filepath": str(tmp / "tarred" / "tarred_audio_manifest.json"),
                               "is_tarred": True, "tarred_audio_filepaths": str(tmp / "tarred" / "audio__OP_0..7_CL_.tar"),
                               "shuffle_n": 256}, None, train=True, seed=0, name="tarred")
        loaders = {"loose files (manifest)": loose, "tar shards (8, shuffle_n=256)": tarred}
        rates = {name: [] for name in loaders}
        counts = {name: _epoch_rate(loader)[1] for name, loader in loaders.items()}  # warm-up pass
        for _ in range(repeats):  # alternate, so both see the same background load
            for name, loader in loaders.items():
                rates[name].append(_epoch_rate(loader)[0])
        rows = [(name, max(rates[name]), float(np.median(rates[name])), counts[name]) for name in loaders]
        print(f"## Loader throughput: {audio_dir} ({report.written + report.discarded} files, resampled to 16 kHz), "
              f"{workers} workers, batch {batch_size}\n")
        print(f"| source | utterances/epoch | utterances/s, best of {repeats} | median |")
        print("|---|---:|---:|---:|")
        for name, best, median, n in rows:
            print(f"| {name} | {n} | {best:.0f} | {median:.0f} |")
        print(f"\ntarred / loose: {rows[1][1] / rows[0][1]:.2f}x (best), {rows[1][2] / rows[0][2]:.2f}x (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    default_audio = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
    if not default_audio.is_dir():
        default_audio = REPO / "data" / "espeak_digits" / "audio"
    parser.add_argument("--audio", type=Path, default=default_audio, help="folder of WAVs (or data/espeak_digits/audio)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--loader-batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    part1(args.utterances, args.batch_size, args.seed)
    if not args.skip_throughput:
        part2(args.audio, args.workers, args.loader_batch_size, args.repeats)


if __name__ == "__main__":
    main()
