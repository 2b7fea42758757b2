"""Generate myna's bundled default corpus: English digit strings spoken by espeak-ng.

Each utterance is 1-4 words from "zero" .. "nine", spoken by one espeak-ng English voice with a
voice variant (e.g. ``en-us+f3``), a speed (words per minute), a pitch and a word gap drawn at
random, then trimmed to a short margin of silence, resampled with soxr, given a random level and
quantized (see :data:`DEFAULTS`). Everything follows from one seed; the same seed and espeak-ng
version give the same corpus. Test utterances are half from the training voices and half from
voices and variants never used in train/dev (:data:`HELD_OUT_VOICES`, :data:`HELD_OUT_VARIANTS`),
so the test WER shows whether a model generalises beyond the voices it heard.

Output layout (paths in the manifests are relative to ``out_dir``)::

    out_dir/train.json, dev.json, test.json
    out_dir/audio/{split}_{i:04d}.flac

Only generating needs espeak-ng (``apt-get install espeak-ng``); reading the corpus does not::

    python -m myna.data.prepare.espeak_digits --out-dir data/espeak_digits
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import soundfile as sf

from myna.data.manifest import ManifestEntry, write_manifest
from myna.data.tts import TTSError, run_espeak, shape_utterance

__all__ = ["generate_espeak_digits", "espeak_version", "DEFAULTS", "main"]

logger = logging.getLogger("myna.data")

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# espeak-ng's own English voices (no mbrola needed).
TRAIN_VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029")
HELD_OUT_VOICES = ("en-gb-x-gbclan", "en-us-nyc")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3")
HELD_OUT_VARIANTS = ("m7", "f4")


@dataclass(frozen=True)
class Settings:
    """Generator settings (the bundled corpus uses :data:`DEFAULTS`)."""

    num_train: int = 800
    num_dev: int = 100
    num_test: int = 100
    min_words: int = 1
    max_words: int = 4
    wpm: tuple[int, int] = (120, 220)       # espeak -s, words per minute
    pitch: tuple[int, int] = (20, 80)       # espeak -p, 0-99
    word_gap: tuple[int, int] = (0, 3)      # espeak -g, extra gap between words in 10 ms units
    peak: tuple[float, float] = (0.25, 0.9)  # output level: peak amplitude after scaling
    margin: tuple[float, float] = (0.05, 0.15)  # silence kept before/after speech, seconds
    sample_rate: int = 8000
    bits: int = 10      # effective bits: samples rounded to multiples of 2**(16 - bits)
    seed: int = 1234


DEFAULTS = Settings()


def espeak_version(executable: str = "espeak-ng") -> str:
    """``espeak-ng --version`` first line, e.g. "eSpeak NG text-to-speech: 1.51 ..."."""
    out = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[0]


def generate_espeak_digits(out_dir: str | os.PathLike, settings: Settings = DEFAULTS,
                           executable: str = "espeak-ng") -> dict[str, list[ManifestEntry]]:
    """Generate the corpus into ``out_dir`` (its ``audio/`` folder is replaced).

    Returns:
        split name -> written entries.
    """
    if shutil.which(executable) is None:
        raise ValueError(f"{executable} not found: install it (apt-get install espeak-ng) to "
                         f"generate the corpus; reading the committed corpus does not need it")
    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    audio_dir.mkdir(parents=True)
    rng = random.Random(settings.seed)
    train_voices = [(v, x) for v in TRAIN_VOICES for x in TRAIN_VARIANTS]
    unseen_voices = ([(v, x) for v in HELD_OUT_VOICES for x in TRAIN_VARIANTS + HELD_OUT_VARIANTS]
                     + [(v, x) for v in TRAIN_VOICES for x in HELD_OUT_VARIANTS])
    plan = {"train": settings.num_train, "dev": settings.num_dev, "test": settings.num_test}
    result = {}
    for split, count in plan.items():
        entries = []
        for i in range(count):
            held_out = split == "test" and i % 2 == 1
            voice, variant = rng.choice(unseen_voices if held_out else train_voices)
            words = [rng.choice(WORDS) for _ in range(rng.randint(settings.min_words,
                                                                 settings.max_words))]
            params = {"voice": f"{voice}+{variant}",
                      "wpm": rng.randint(*settings.wpm),
                      "pitch": rng.randint(*settings.pitch),
                      "word_gap": rng.randint(*settings.word_gap)}
            text = " ".join(words)
            try:
                speech, rate = run_espeak(text, executable=executable, **params)
                # Draw order (margins, then level) is part of the corpus definition: keep it.
                before, after = rng.uniform(*settings.margin), rng.uniform(*settings.margin)
                audio = shape_utterance(speech, rate, before, after, rng.uniform(*settings.peak),
                                        settings.sample_rate, settings.bits)
            except TTSError as err:
                raise ValueError(str(err)) from err
            path = audio_dir / f"{split}_{i:04d}.flac"
            sf.write(path, audio, settings.sample_rate, format="FLAC", subtype="PCM_16")
            entries.append(ManifestEntry(
                audio_filepath=str(path.resolve()),
                duration=round(len(audio) / settings.sample_rate, 6),
                text=text,
                extra={**params, "held_out_voice": held_out},
            ))
        write_manifest(entries, out_dir / f"{split}.json", relative_paths=True)
        hours = sum(e.duration for e in entries) / 3600
        logger.info("%s: %d utterances, %.3f h", split, len(entries), hours)
        result[split] = entries
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default="data/espeak_digits")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--num-train", type=int, default=DEFAULTS.num_train)
    parser.add_argument("--num-dev", type=int, default=DEFAULTS.num_dev)
    parser.add_argument("--num-test", type=int, default=DEFAULTS.num_test)
    parser.add_argument("--sample-rate", type=int, default=DEFAULTS.sample_rate)
    parser.add_argument("--bits", type=int, default=DEFAULTS.bits)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = Settings(num_train=args.num_train, num_dev=args.num_dev, num_test=args.num_test,
                        sample_rate=args.sample_rate, bits=args.bits, seed=args.seed)
    logger.info("%s", espeak_version())
    generate_espeak_digits(args.out_dir, settings)


if __name__ == "__main__":
    main()
