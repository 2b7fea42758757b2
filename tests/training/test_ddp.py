"""``myna train`` under several CPU processes (gloo): ranks split the data, the curve matches one
process with the whole batch, and a lost rank stops the run with its name, not a hang.

Each test launches real processes (``myna train`` with ``trainer.devices=2``, Lightning's own
launcher, or ``torchrun``), so each takes 15-40 s on a 2-core machine: they are the few
multi-process checks CI runs. Longer ones (two torchrun "nodes", FSDP memory) are in
``benchmarks/distributed.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from myna.training.plots import read_metrics

REPO = Path(__file__).resolve().parents[2]
STEPS = 12  # 1.5 epochs of 32 utterances at 8 per step


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """32 noise utterances of 0.4-0.8 s with one digit word each, and a BPE tokenizer for them."""
    import numpy as np
    import soundfile as sf

    from myna.text import train_sentencepiece

    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(4)
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    lines = []
    for i in range(32):
        samples = int(8000 * (0.4 + 0.4 * rng.random()))
        sf.write(root / f"{i}.wav", (0.1 * rng.standard_normal(samples)).astype(np.float32), 8000)
        lines.append(json.dumps({"audio_filepath": f"{i}.wav", "duration": samples / 8000, "text": words[i % 10]}))
    manifest = root / "train.json"
    manifest.write_text("\n".join(lines) + "\n")
    train_sentencepiece(words * 3, root / "tok", vocab_size=24, model_type="bpe")
    return {"manifest": str(manifest), "tok": str(root / "tok"), "n": 32}


RECIPE = REPO / "conf" / "conformer_ctc_small.yaml"


def deterministic_overrides(corpus, exp: Path, batch_size: int, steps: int = STEPS) -> list[str]:
    """A one-layer Conformer-CTC with nothing random in the forward pass (no dither, SpecAugment or
    dropout) and nothing that mixes utterances of a batch (layer norm in the convolution module,
    not batch norm), a fixed tokenizer, logging every step, no validation."""
    return [
        f"model.train_ds.manifest_filepath={corpus['manifest']}", f"model.train_ds.batch_size={batch_size}",
        "model.train_ds.use_semi_sorted_batching=false", f"model.tokenizer.dir={corpus['tok']}",
        "model.preprocessor.dither=0.0", "model.spec_augment=null", "model.encoder.n_layers=1",
        "model.encoder.d_model=64", "model.encoder.conv_norm_type=layer_norm", "model.encoder.dropout=0.0",
        "model.encoder.dropout_pre_encoder=0.0", "model.encoder.dropout_att=0.0",
        f"trainer.max_steps={steps}", "trainer.log_every_n_steps=1",
        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
        f"exp_manager.exp_dir={exp}", "exp_manager.create_tensorboard_logger=false",
        "exp_manager.plot_learning_curve=false", "exp_manager.log_utterance_ids=true",
        "exp_manager.checkpoint_every_n_steps=2", "distributed.heartbeat_s=0.5", "distributed.lost_after_s=10",
    ]


def run_myna(args: list[str], timeout: float = 900, launcher: list[str] | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable, "-m", "myna.cli"]) + ["train", str(RECIPE), *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def losses(exp: Path) -> dict[int, float]:
    """{step: train_loss} over the run's log versions (a resumed run's steps replace the earlier ones)."""
    versions = sorted(exp.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    return dict(read_metrics(versions).get("train_loss", []))


def seen(exp: Path, epoch: int = 0) -> dict[int, list[str]]:
    from myna.training.utterance_log import read_utterance_log

    return read_utterance_log(exp / "utterances", epoch)


TWO_RANKS = ["trainer.devices=2", "trainer.strategy=ddp"]


@pytest.fixture(scope="module")
def two_rank_run(corpus, tmp_path_factory) -> Path:
    """An uninterrupted run on two ranks (Lightning's launcher), batch 4 per rank."""
    exp = tmp_path_factory.mktemp("two") / "exp"
    run_myna(deterministic_overrides(corpus, exp, 4) + TWO_RANKS)
    return exp


def test_two_processes_split_the_data_and_match_one_process_with_twice_the_batch(corpus, two_rank_run, tmp_path):
    """2 ranks x batch 4 vs 1 process x batch 8, same seed: each step's global batch is the same 8
    utterances, so the mean loss over ranks equals the single process's loss, step for step."""
    one = tmp_path / "one"
    run_myna(deterministic_overrides(corpus, one, 8) + ["trainer.devices=1"])
    per_rank = seen(two_rank_run)  # epoch 0: 4 steps of 4 utterances per rank
    assert sorted(per_rank) == [0, 1] and [len(v) for v in per_rank.values()] == [16, 16]
    assert Counter(per_rank[0] + per_rank[1]) == Counter(f"{corpus['manifest']}:{i}" for i in range(1, 33))
    assert Counter(per_rank[0] + per_rank[1]) == Counter(seen(one)[0])
    single, ddp = losses(one), losses(two_rank_run)
    assert list(single) == list(ddp) == list(range(STEPS)) and min(single.values()) > 0
    # float32 sums in another order (two halves averaged by the all-reduce vs one batch of 8) bound the match
    assert list(ddp.values()) == pytest.approx(list(single.values()), rel=1e-5, abs=0)


def test_a_killed_rank_stops_the_run_with_its_name_and_the_rerun_continues_the_curve(corpus, two_rank_run,
                                                                                      tmp_path):
    exp = tmp_path / "exp"
    command = [sys.executable, "-m", "myna.cli", "train", str(RECIPE),
               *deterministic_overrides(corpus, exp, 4), *TWO_RANKS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    deadline = time.monotonic() + 900
    while not (exp / "checkpoints" / "step2.ckpt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint at step 2"
        time.sleep(0.05)
    rank1 = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                 text=True).stdout.split()]
    assert len(rank1) == 1  # Lightning's launcher starts rank 1 as a child of rank 0's process
    os.kill(rank1[0], signal.SIGKILL)
    killed = time.monotonic()
    out, _ = proc.communicate(timeout=300)  # bounded: no hang
    assert proc.returncode != 0 and time.monotonic() - killed < 60
    # myna's watchdog ("lost rank 1 (host pid N)") or Lightning's observer of its child processes
    assert re.search(rf"lost rank 1 \(.* pid {rank1[0]}\)|\[rank: 1\] Child process with PID {rank1[0]}", out), \
        out[-3000:]
    resumed_from = max(int(p.stem[4:]) for p in (exp / "checkpoints").glob("step*.ckpt"))
    assert resumed_from < STEPS, "the run ended before the kill"
    run_myna(command[5:])  # the same command again (its overrides): resumes from last.ckpt
    reference, curve = losses(two_rank_run), losses(exp)
    after = list(range(resumed_from, STEPS))
    assert [s for s in curve if s >= resumed_from] == after
    assert [curve[s] for s in after] == pytest.approx([reference[s] for s in after], rel=1e-5, abs=0)


def test_myna_average_writes_the_mean_of_the_last_checkpoints_as_a_nemo(two_rank_run, tmp_path):
    import torch

    import myna
    from myna.cli import main

    out = tmp_path / "avg.nemo"
    assert main(["average", str(two_rank_run), "--last", "3", "--out", str(out)]) == 0
    states = [torch.load(two_rank_run / "checkpoints" / f"step{s}.ckpt", map_location="cpu")["state_dict"]
              for s in (8, 10, 12)]
    averaged = myna.load(out).state_dict()
    for key in ("encoder.layers.0.self_attn.linear_q.weight", "decoder.decoder_layers.0.weight"):
        expected = sum(s[f"model.{key}"].double() for s in states) / 3
        assert torch.allclose(averaged[key].double(), expected, atol=1e-7), key
    assert main(["average", str(two_rank_run), "--steps", "100:200"]) == 2  # a clear error, no traceback


FSDP = ["trainer.devices=2", "trainer.strategy=fsdp"]


def test_fsdp_starts_from_the_same_weights_and_follows_the_ddp_curve_and_exports_one_nemo(corpus, two_rank_run,
                                                                                          tmp_path):
    """FSDP (full shard, each Conformer layer a unit) on 2 ranks vs DDP on 2 ranks, same seed: the
    same initial weights (step 0's loss), the same curve, and the .nemo gathered from the shards
    holds the DDP run's weights."""
    import torch

    import myna

    exp = tmp_path / "fsdp"
    run_myna(deterministic_overrides(corpus, exp, 4) + FSDP)
    ddp, fsdp = losses(two_rank_run), losses(exp)
    assert list(fsdp) == list(range(STEPS))
    assert fsdp[0] == pytest.approx(ddp[0], rel=1e-6, abs=0)  # same initial weights
    assert list(fsdp.values()) == pytest.approx(list(ddp.values()), rel=1e-5, abs=0)
    last = exp / "checkpoints" / "last.ckpt"
    assert last.is_dir() and sorted(p.name for p in last.glob("optimizer.rank*.pt")) == \
        ["optimizer.rank0.pt", "optimizer.rank1.pt"]
    assert not list((exp / "checkpoints").glob(".*"))  # no temporary folder left behind
    sa = myna.load(exp / "conformer_ctc_small.nemo").state_dict()
    sb = myna.load(two_rank_run / "conformer_ctc_small.nemo").state_dict()
    assert sa.keys() == sb.keys()
    assert max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa) < 1e-4


def test_fsdp_with_8bit_adamw_checkpoints_per_rank_and_resumes_the_same_curve(corpus, tmp_path):
    """bitsandbytes' 8-bit AdamW under FSDP: each rank's 8-bit state is saved in its own file beside
    the model shards; a run stopped at step 6 (mid-epoch) and resumed continues the uninterrupted
    run's losses."""
    import torch

    pytest.importorskip("bitsandbytes")
    steps = 8
    extra = FSDP + ["model.optim.name=adamw8bit", "model.optim.sched=null"]  # the LR does not depend on max_steps
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_myna(deterministic_overrides(corpus, whole, 4, steps=steps) + extra)
    run_myna(deterministic_overrides(corpus, cut, 4, steps=6) + extra)
    ckpt = cut / "checkpoints" / "last.ckpt"
    own = torch.load(ckpt / "optimizer.rank1.pt", weights_only=True)
    assert own["world_size"] == 2 and own["rank"] == 1
    def tensors(tree):
        return [tree] if isinstance(tree, torch.Tensor) else \
            [t for v in tree.values() for t in tensors(v)] if isinstance(tree, dict) else []

    # the 8-bit moments with their per-block absmax, as bitsandbytes keeps them
    assert any(t.dtype == torch.uint8 for t in tensors(own["optimizer_states"][0]["state"]))
    run_myna(deterministic_overrides(corpus, cut, 4, steps=steps) + extra + ["+resume=true"])
    reference, resumed = losses(whole), losses(cut)
    assert list(resumed) == list(range(steps))
    assert [resumed[s] for s in (6, 7)] == pytest.approx([reference[s] for s in (6, 7)], rel=1e-5, abs=0)
    # one process cannot take over two ranks' optimizer shards: a one-line error, no traceback
    one = [a for a in deterministic_overrides(corpus, cut, 4, steps=steps + 2) + extra if a != "trainer.devices=2"]
    proc = subprocess.run([sys.executable, "-m", "myna.cli", "train", str(RECIPE), *one, "trainer.devices=1",
                           "+resume=true"], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "last.ckpt: written by 2 FSDP ranks, this run has 1" in proc.stderr
