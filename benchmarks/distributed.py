"""Multi-process training on CPU (gloo): what issue 13 asks to be shown, measured end to end.

    python benchmarks/distributed.py equivalence [--steps 20]   # 1 x 2b vs 2 x b under each launcher
    python benchmarks/distributed.py kill                        # a rank killed mid-run, then resumed
    python benchmarks/distributed.py fsdp [--layers 16 --d-model 512]  # peak RSS per rank, DDP vs FSDP
    python benchmarks/distributed.py all

Every run is ``myna train`` (or its ``train()`` under ``torchrun``) in fresh processes, on FSDD
(``../shared/data/fsdd``, prepared on first use) or, without it, 64 synthetic utterances; the
work folder is ``exp/bench_distributed`` (``--work`` to change). Nothing is asserted; each
section prints a table and the command behind each row. Threads: ``OMP_NUM_THREADS=1`` per process.

- equivalence: a one-layer Conformer-CTC with nothing random in its forward pass and no
  cross-utterance normalisation (layer norm in the convolution module), 1 process x batch 2b vs
  2 processes x batch b under Lightning's launcher (``trainer.devices=2``), ``torchrun
  --nproc_per_node 2`` and two ``torchrun --nnodes 2`` launches on 127.0.0.1; the largest
  difference over the first ``--steps`` logged losses, and whether the union of the utterance ids
  the ranks trained on in those steps is the single process's, each exactly once. The dummy
  ContextNet (batch norm) is measured too: there the per-rank batch statistics bound the match.
- kill: two ranks (Lightning's launcher), rank 1 killed with SIGKILL after the step-4 checkpoint;
  how long the survivors take to stop and what they print; then the same command again, and its
  losses after the resume against an uninterrupted run.
- fsdp: peak RSS per rank (and above the start-up footprint) of a few steps of a Conformer-CTC
  under DDP and FSDP (full shard), with AdamW and bitsandbytes' 8-bit AdamW, under glibc's
  default allocator settings and with a fixed mmap threshold (freed tensors go back to the
  system); each FSDP run's sharded checkpoint resumed for one more step and exported to one
  ``.nemo``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MYNA = [sys.executable, "-m", "myna.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus(work: Path) -> dict:
    """FSDD manifests (prepared once) or synthetic ones, and a tokenizer trained once."""
    fsdd = REPO.parent / "shared" / "data" / "fsdd"
    out = work / "data"
    if not (out / "train.json").is_file():
        if fsdd.is_dir():
            subprocess.run(MYNA + ["data", "prepare", "fsdd", "--source", str(fsdd), "--out-dir", str(out)],
                           check=True, env=ENV, cwd=REPO)
        else:
            sys.path.insert(0, str(REPO / "tests"))
            from conftest import write_wav_manifest

            out.mkdir(parents=True, exist_ok=True)
            for split, n in (("train", 64), ("dev", 16), ("test", 16)):
                Path(write_wav_manifest(out, split, n, seed=len(split))).rename(out / f"{split}.json")
    if not (out / "tok" / "tokenizer.model").is_file():
        subprocess.run(MYNA + ["tokenizer", "train", "--manifest", str(out / "train.json"), "--vocab-size", "32",
                               "--out-dir", str(out / "tok")], check=True, env=ENV, cwd=REPO)
    return {"train": str(out / "train.json"), "dev": str(out / "dev.json"), "test": str(out / "test.json"),
            "tok": str(out / "tok")}


CONFORMER_DETERMINISTIC = [
    "model.preprocessor.dither=0.0", "model.spec_augment=null", "model.encoder.n_layers=1", "model.encoder.d_model=64",
    "model.encoder.conv_norm_type=layer_norm", "model.encoder.dropout=0.0", "model.encoder.dropout_pre_encoder=0.0",
    "model.encoder.dropout_att=0.0",
]
CONTEXTNET_DETERMINISTIC = [
    "model.preprocessor.dither=0.0", "model.spec_augment=null", "model.encoder.jasper.1.dropout=0.0",
    "model.joint.jointnet.dropout=0.0",
]


def common(data: dict, exp: Path, steps: int, batch: int, extra: list[str] = ()) -> list[str]:
    return [f"model.train_ds.manifest_filepath={data['train']}", f"model.train_ds.batch_size={batch}",
            "model.train_ds.use_semi_sorted_batching=false", f"model.tokenizer.dir={data['tok']}",
            f"trainer.max_steps={steps}", "trainer.log_every_n_steps=1", "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false", f"exp_manager.exp_dir={exp}",
            "exp_manager.create_tensorboard_logger=false", "exp_manager.plot_learning_curve=false",
            "exp_manager.log_utterance_ids=true", *extra]


def losses(exp: Path) -> dict[int, float]:
    """{step: train_loss} over the run's log versions (a resumed run's steps replace the earlier ones)."""
    from myna.training.plots import read_metrics

    versions = sorted(exp.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    return dict(read_metrics(versions).get("train_loss", []))


def seen(exp: Path) -> list[str]:
    """The utterance ids every rank trained on in epoch 0."""
    from myna.training.utterance_log import read_utterance_log

    return [i for ids in read_utterance_log(exp / "utterances", 0).values() for i in ids]


def run(command: list[str], log: Path, env: dict | None = None, timeout: float = 1800) -> float:
    start = time.monotonic()
    with log.open("w") as f:
        subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env or ENV, cwd=REPO, timeout=timeout,
                       check=True)
    return time.monotonic() - start


def torchrun(nproc: int, nnodes: int = 1, node_rank: int = 0, port: int | None = None) -> list[str]:
    args = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}"]
    if nnodes > 1:
        args += [f"--node_rank={node_rank}", "--master_addr=127.0.0.1", f"--master_port={port}"]
    else:
        args += ["--master_addr=127.0.0.1", f"--master_port={port or free_port()}"]
    return args + ["-m", "myna.cli"]


def equivalence(work: Path, steps: int) -> None:
    data = corpus(work)
    b = 4
    rows = []
    for model, recipe, extra in (("Conformer-CTC (layer norm)", "conformer_ctc_small.yaml", CONFORMER_DETERMINISTIC),
                                 ("ContextNet-RNNT dummy (batch norm)", "contextnet_rnnt_dummy.yaml",
                                  CONTEXTNET_DETERMINISTIC)):
        root = work / "equivalence" / recipe.split(".")[0]
        ref = root / "one_process"
        rec = str(REPO / "conf" / recipe)
        if not losses(ref):
            root.mkdir(parents=True, exist_ok=True)
            run(MYNA + ["train", rec, *common(data, ref, steps, 2 * b, extra)], root / "one_process.log")
        single, single_ids = losses(ref), Counter(seen(ref))
        launches = {"lightning devices=2": None, "torchrun nproc 2": None, "torchrun nnodes 2 (loopback)": None}
        if recipe.startswith("contextnet"):
            launches = {"lightning devices=2": None}
        for name in launches:
            exp = root / name.replace(" ", "_").replace("=", "").replace("(", "").replace(")", "")
            args = ["train", rec, *common(data, exp, steps, b, extra)]
            if not losses(exp):
                if name.startswith("lightning"):
                    run(MYNA + args + ["trainer.devices=2", "trainer.strategy=ddp"], exp.with_suffix(".log"))
                elif "nproc" in name:
                    run(torchrun(2) + args + ["trainer.devices=2", "trainer.strategy=ddp"], exp.with_suffix(".log"))
                else:
                    port = free_port()
                    node_args = args + ["trainer.devices=1", "trainer.num_nodes=2", "trainer.strategy=ddp"]
                    logs = [exp.with_suffix(f".node{n}.log") for n in (0, 1)]
                    procs = [subprocess.Popen(torchrun(1, 2, n, port) + node_args, stdout=logs[n].open("w"),
                                              stderr=subprocess.STDOUT, env=ENV, cwd=REPO) for n in (0, 1)]
                    for p in procs:
                        p.wait(timeout=1800)
            got = losses(exp)
            common_steps = [s for s in single if s in got][:steps]
            diff = max(abs(single[s] - got[s]) for s in common_steps) if common_steps else float("nan")
            ids = Counter(seen(exp))
            rows.append((model, name, len(common_steps), diff, ids == single_ids,
                         max(ids.values(), default=0) == 1))
    print(f"\n2 processes x batch {b} vs 1 process x batch {2 * b}, first {steps} losses (OMP_NUM_THREADS=1)")
    print("| model | launch | steps compared | max abs loss difference | same utterances as 1 process | each once |")
    print("| --- | --- | ---: | ---: | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2e} | {r[4]} | {r[5]} |")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def kill(work: Path, steps: int = 12) -> None:
    data = corpus(work)
    root = work / "kill"
    root.mkdir(parents=True, exist_ok=True)
    rec = str(REPO / "conf" / "conformer_ctc_small.yaml")
    extra = CONFORMER_DETERMINISTIC + ["exp_manager.checkpoint_every_n_steps=4", "trainer.devices=2",
                                       "trainer.strategy=ddp", "distributed.heartbeat_s=1",
                                       "distributed.lost_after_s=10"]
    ref = root / "uninterrupted"
    if not losses(ref):
        run(MYNA + ["train", rec, *common(data, ref, steps, 4, extra)], root / "uninterrupted.log")
    exp = root / "killed"
    args = MYNA + ["train", rec, *common(data, exp, steps, 4, extra)]
    log = root / "killed.log"
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV, cwd=REPO)
    while not (exp / "checkpoints" / "step4.ckpt").exists():
        if proc.poll() is not None:
            raise SystemExit(f"the run ended before its first checkpoint; see {log}")
        time.sleep(0.2)
    victims = _children(proc.pid)  # Lightning's launcher starts rank 1 as a child of rank 0's process
    if not victims:
        raise SystemExit("found no rank-1 process to kill")
    os.kill(victims[0], signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        code = proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = "hung (killed after 600 s)"
    stopped_after = time.monotonic() - killed_at
    lines = [line for line in log.read_text().splitlines() if "lost rank" in line or "myna train: error" in line]
    resumed = run(args, root / "resumed.log")
    a, b = losses(ref), losses(exp)
    after = [s for s in a if s >= 4 and s in b]
    diff = max(abs(a[s] - b[s]) for s in after) if after else float("nan")
    print("\nrank 1 killed (SIGKILL) after the step-4 checkpoint; 2 ranks, Lightning's launcher")
    print(f"- the run stopped {stopped_after:.1f} s after the kill, exit status {code}")
    for line in lines[:3]:
        print(f"- printed: {line.strip()[:300]}")
    print(f"- the same command again resumed and finished in {resumed:.0f} s; steps {after[0]}..{after[-1]} "
          f"vs the uninterrupted run: max abs loss difference {diff:.2e}" if after else "- no steps to compare")


FSDP_WORKER = r"""
import json, os, resource, sys, time
def rss_kb():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024
def peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start_rss = rss_kb()
import lightning as L
import myna.training.run as run
from myna.config import load_config
import_rss = rss_kb()
marks = {}
class Marks(L.Callback):  # the peak so far when training ends, before the model is gathered and exported
    def on_train_end(self, trainer, pl_module):
        marks["train_end_peak_kb"] = peak_kb()
callbacks = run._distributed_callbacks
run._distributed_callbacks = lambda cfg, exp: callbacks(cfg, exp) + [Marks()]
cfg = load_config(sys.argv[1], sys.argv[3:])
t0 = time.monotonic()
run.train(cfg)
out = {"rank": int(os.environ.get("RANK", 0)), "start_rss_kb": start_rss, "after_import_rss_kb": import_rss,
       "peak_rss_kb": peak_kb(), "train_s": time.monotonic() - t0, **marks}
with open(sys.argv[2] + f".rank{out['rank']}.json", "w") as f:
    json.dump(out, f)
"""

# glibc keeps freed blocks below its (self-raising) mmap threshold in the heap, so a process's RSS
# stays at its high-water mark; a fixed threshold returns each freed tensor of 256 KiB or more.
ALLOCATORS = {"glibc default": {}, "MALLOC_MMAP_THRESHOLD_=262144": {"MALLOC_MMAP_THRESHOLD_": "262144"}}


def fsdp(work: Path, layers: int, d_model: int, steps: int = 3, strategies: tuple[str, ...] = ("ddp", "fsdp"),
         allocators: tuple[str, ...] = tuple(ALLOCATORS)) -> None:
    data = corpus(work)
    root = work / "fsdp"
    root.mkdir(parents=True, exist_ok=True)
    worker = root / "worker.py"
    worker.write_text(FSDP_WORKER)
    rec = str(REPO / "conf" / "conformer_ctc_small.yaml")
    size = [f"model.encoder.n_layers={layers}", f"model.encoder.d_model={d_model}", "model.encoder.n_heads=8"]
    rows, params = [], None

    def args_for(exp: Path, optim: str, strategy: str, n: int) -> list[str]:
        return common(data, exp, n, 4, size + [f"model.optim.name={optim}", f"trainer.strategy={strategy}",
                                                "trainer.devices=2", "exp_manager.checkpoint_every_n_steps=2",
                                                "exp_manager.log_utterance_ids=false"])

    for allocator in allocators:
        env = {**ENV, **ALLOCATORS[allocator]}
        tag = "default" if not ALLOCATORS[allocator] else "mmap"
        for strategy in strategies:
            for optim in ("adamw", "adamw8bit"):
                name = f"{tag}_{strategy}_{optim}"
                exp = root / name
                shutil.rmtree(exp, ignore_errors=True)  # a fresh run, not a resumed one
                stats = root / name
                cmd = torchrun(2)[:-2] + [str(worker), rec, str(stats), *args_for(exp, optim, strategy, steps)]
                try:
                    run(cmd, root / f"{name}.log", env=env)
                    ranks = [json.loads(Path(f"{stats}.rank{r}.json").read_text()) for r in (0, 1)]
                    rows.append((allocator, strategy, optim, max(r["peak_rss_kb"] for r in ranks) / 1024,
                                 max(r["train_end_peak_kb"] for r in ranks) / 1024,
                                 max(r["peak_rss_kb"] - r["after_import_rss_kb"] for r in ranks) / 1024,
                                 max(r["train_s"] for r in ranks), "ok"))
                    if params is None:
                        from myna.interop.nemo import load_nemo

                        params = sum(p.numel() for p in load_nemo(next(exp.glob("*.nemo"))).parameters())
                except subprocess.CalledProcessError:
                    tail = (root / f"{name}.log").read_text().strip().splitlines()[-1:]
                    rows.append((allocator, strategy, optim, float("nan"), float("nan"), float("nan"), float("nan"),
                                 f"failed: {tail[0][:160] if tail else ''}"))
    notes = []
    for optim in ("adamw", "adamw8bit") if "fsdp" in strategies else ():
        exp = root / f"{'default' if 'glibc default' in allocators else 'mmap'}_fsdp_{optim}"
        last = exp / "checkpoints" / "last.ckpt"
        if not last.is_dir():
            continue
        log = root / f"fsdp_{optim}_resumed.log"
        try:  # the sharded checkpoint resumes for one more step; the .nemo is one file
            run(torchrun(2)[:-2] + [str(worker), rec, str(root / f"fsdp_{optim}_resumed"),
                                    *args_for(exp, optim, "fsdp", steps + 1), "+resume=true"], log)
            resumed = [line for line in log.read_text().splitlines() if "Restored all states" in line]
            from myna.interop.nemo import load_nemo

            nemo = next(exp.glob("*.nemo"))
            n = sum(p.numel() for p in load_nemo(nemo).parameters())
            notes.append(f"fsdp + {optim}: sharded checkpoint {last} ({len(list(last.iterdir()))} files: model "
                         f"shards, meta.pt, optimizer.rank0/1.pt) resumed to step {steps + 1} "
                         f"({'restored from it' if resumed else 'NOT restored: no Restored line in ' + log.name}); "
                         f"{nemo.name} ({nemo.stat().st_size / 2**20:.1f} MiB) loads with {n / 1e6:.1f}M parameters")
        except Exception as err:  # report, do not hide
            notes.append(f"fsdp + {optim}: resume/export failed: {err}")
    print(f"\nConformer-CTC, {layers} layers x d_model {d_model} ({(params or 0) / 1e6:.1f}M parameters), batch 4 per "
          f"rank, {steps} steps with a checkpoint every 2, 2 ranks (torchrun, gloo, OMP_NUM_THREADS=1); the largest "
          f"figure of the two ranks")
    print("| allocator | strategy | optimizer | peak RSS per rank (MiB) | peak by the end of training, before the "
          ".nemo export (MiB) | peak above the footprint after imports (MiB) | run (s) | |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.0f} | {r[6]:.0f} | {r[7]} |")
    for note in notes:
        print(f"- {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["equivalence", "kill", "fsdp", "all"])
    parser.add_argument("--work", default=str(REPO / "exp" / "bench_distributed"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--strategies", default="ddp,fsdp", help="fsdp: which strategies to measure")
    parser.add_argument("--allocators", default=",".join(ALLOCATORS),
                        help=f"fsdp: under which allocator settings ({', '.join(ALLOCATORS)})")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what in ("equivalence", "all"):
        equivalence(work, args.steps)
    if args.what in ("kill", "all"):
        kill(work)
    if args.what in ("fsdp", "all"):
        fsdp(work, args.layers, args.d_model, strategies=tuple(args.strategies.split(",")),
             allocators=tuple(args.allocators.split(",")))


if __name__ == "__main__":
    main()
