"""Wall time of the pre-flight manifest check (``myna data check``) on a LibriSpeech-sized manifest.

Builds, under OUT, a corpus laid out like LibriSpeech's train set (281,241 utterances by default,
FLAC, in speaker/chapter-like folders of up to 1,000 files) whose files are hard links to a few
hundred distinct real FLAC files from the bundled espeak digit corpus, so the disk holds only those
few hundred files. The manifest has the true durations, except a handful of planted faults (missing
files, wrong durations, empty texts) that the check must name. Then it times ``check_manifests``
with 1 process and with every CPU.

Printed per process count: wall time, CPU time of all processes (the figure that does not depend
on how busy the machine is) and the load average. Caveat for reading the figures: hard links share inodes, so after the first pass every header read
hits the page cache; a real corpus on a cold disk adds one random read per file.

    python benchmarks/data_check.py --out /tmp/ls_check [--lines 281241] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import soundfile as sf

from myna.data.check import check_manifests, default_workers

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "data" / "espeak_digits"


def build(out: Path, lines: int) -> Path:
    manifest = out / "train.json"
    if manifest.is_file() and sum(1 for _ in open(manifest)) == lines:
        return manifest
    sources = sorted((SOURCE / "audio").glob("*.flac"))
    texts = {}
    for name in ("train.json", "dev.json", "test.json"):
        for line in (SOURCE / name).read_text().splitlines():
            row = json.loads(line)
            texts[Path(row["audio_filepath"]).name] = row["text"]
    durations = [sf.info(str(p)).duration for p in sources]
    began = time.perf_counter()
    with open(manifest, "w") as f:
        for i in range(lines):
            k = i % len(sources)
            folder = out / "audio" / f"{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{i:06d}.flac"
            if not path.exists():
                os.link(sources[k], path)
            row = {"audio_filepath": str(path.relative_to(out)), "duration": round(durations[k], 3),
                   "text": texts.get(sources[k].name, "one two")}
            if i in (7, 150_000, 270_001):  # planted faults: missing files
                row["audio_filepath"] = row["audio_filepath"].replace(".flac", "_gone.flac")
            if i in (12, 200_000):  # durations twice the real length (NeMo's an4 manifests)
                row["duration"] = round(2 * durations[k], 3)
            if i == 99_999:
                row["text"] = ""
            f.write(json.dumps(row) + "\n")
    print(f"built {lines} entries ({len(sources)} distinct files, hard-linked) in {time.perf_counter() - began:.1f} s")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--lines", type=int, default=281_241)
    parser.add_argument("--workers", default=f"1,{default_workers()}", help="comma list of process counts")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = build(args.out, args.lines)
    check_manifests([manifest], workers=1)  # warm the page cache (see the caveat above)
    for workers in [int(w) for w in args.workers.split(",")]:
        cpu0, kids0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        report = check_manifests([manifest], workers=workers, max_listed=3)
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = time.process_time() - cpu0 + (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        print(f"workers={workers}: {report.wall_s:.2f} s wall, {cpu:.2f} s CPU (all processes), "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(report.summary(max_listed=3))


if __name__ == "__main__":
    main()
