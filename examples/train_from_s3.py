"""Train from an S3 bucket and from disk with the same seed, and compare the loss curves.

Starts moto's S3 server on 127.0.0.1 (``pip install 'myna[test,stores]'``), writes FSDD's training
split as a NeMo tarred dataset (plus the plain manifest and audio), uploads everything, then runs
``myna train`` on ``conf/contextnet_rnnt_dummy.yaml`` twice, reading

- the local folder, and
- ``s3://`` URLs of the same manifests and shards (the tarred manifest is cached, the shards
  stream; with ``--plain`` the plain manifest and its audio are cached instead),

and prints the per-step training losses side by side with the largest difference, and plots both
curves (``<out>/loss_s3_vs_disk.png``).

    python examples/train_from_s3.py --fsdd ../shared/data/fsdd --out exp/s3_vs_disk --steps 100
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _losses(exp_dir: Path) -> dict[int, float]:
    rows = {}
    for metrics in sorted(exp_dir.glob("logs/version_*/metrics.csv")):
        with open(metrics) as f:
            for row in csv.DictReader(f):
                if row.get("train_loss"):
                    rows[int(row["step"])] = float(row["train_loss"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsdd", default=str(REPO.parent / "shared" / "data" / "fsdd"))
    parser.add_argument("--out", default="exp/s3_vs_disk")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--plain", action="store_true", help="plain manifest + audio instead of tar shards")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "tests" / "data"))
    from store_servers import S3Server

    from myna.config import load_config
    from myna.data.prepare.fsdd import prepare_fsdd
    from myna.data.tarred import write_tarred_dataset
    from myna.training.run import train

    out = Path(args.out).resolve()
    data = out / "data"
    manifests = prepare_fsdd(args.fsdd, data / "manifests", dev_takes=5)
    # A bucket holds the corpus as one folder: the plain manifest with audio beside it (relative
    # paths), and the tarred dataset.
    from myna.data.manifest import read_manifest, write_manifest

    entries = read_manifest(manifests["train"])
    (data / "corpus" / "audio").mkdir(parents=True, exist_ok=True)
    for entry in entries:
        target = data / "corpus" / "audio" / Path(entry.audio_filepath).name
        if not target.exists():
            target.write_bytes(Path(entry.audio_filepath).read_bytes())
        entry.audio_filepath = str(target)
    write_manifest(entries, data / "corpus" / "train.json", relative_paths=True)
    write_tarred_dataset(str(data / "corpus" / "train.json"), data / "corpus" / "tarred", args.shards,
                         shuffle=True, shuffle_seed=1)
    if args.plain:
        disk = {"model.train_ds.manifest_filepath": str(data / "corpus" / "train.json")}
    else:
        disk = {"model.train_ds.manifest_filepath": str(data / "corpus" / "tarred" / "tarred_audio_manifest.json"),
                "model.train_ds.is_tarred": "true",
                "model.train_ds.tarred_audio_filepaths":
                    str(data / "corpus" / "tarred" / f"audio__OP_0..{args.shards - 1}_CL_.tar")}
    from myna.text import train_sentencepiece

    train_sentencepiece([e.text for e in entries], out / "tokenizer", vocab_size=32)  # one tokenizer for both runs
    common = [f"model.tokenizer.dir={out / 'tokenizer'}", f"trainer.max_steps={args.steps}", "trainer.log_every_n_steps=1", "trainer.val_check_interval=1000",
              "trainer.enable_progress_bar=false", "model.train_ds.shuffle_n=64", "model.validation_ds.manifest_filepath=null",
              "exp_manager.checkpoint_every_n_steps=100000"]
    with S3Server() as s3:
        os.environ.update(s3.env())
        os.environ["MYNA_DATA_STORE_CACHE_DIR"] = str(out / "store_cache")
        count = s3.upload(data / "corpus", "fsdd", prefix="corpus")
        print(f"uploaded {count} objects to s3://fsdd/corpus on {s3.url}", flush=True)
        remote = {k: v.replace(str(data / "corpus"), "s3://fsdd/corpus") if k != "model.train_ds.is_tarred" else v
                  for k, v in disk.items()}
        curves = {}
        for name, sources in (("disk", disk), ("s3", remote)):
            overrides = common + [f"{k}={v}" for k, v in sources.items()] + [f"exp_manager.exp_dir={out / name}",
                                                                            f"name=from_{name}"]
            train(load_config(REPO / "conf" / "contextnet_rnnt_dummy.yaml", overrides))
            curves[name] = _losses(out / name)
    steps = sorted(set(curves["disk"]) & set(curves["s3"]))
    diffs = [abs(curves["disk"][s] - curves["s3"][s]) for s in steps]
    print(f"{'step':>6} {'disk':>10} {'s3':>10}")
    for s in steps[:: max(1, len(steps) // 20)]:
        print(f"{s:>6} {curves['disk'][s]:>10.5f} {curves['s3'][s]:>10.5f}")
    print(f"{len(steps)} steps compared; largest |loss(disk) - loss(s3)| = {max(diffs):.3g}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [curves["disk"][s] for s in steps], label="disk", linewidth=3, alpha=0.5)
    ax.plot(steps, [curves["s3"][s] for s in steps], label="s3:// (moto server)", linestyle="--")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_title(f"same seed, {'plain' if args.plain else 'tarred'} data: max diff {max(diffs):.3g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_s3_vs_disk.png", dpi=110)
    print(f"plot: {out / 'loss_s3_vs_disk.png'}")
    return 0 if max(diffs) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
