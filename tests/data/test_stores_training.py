"""Training from data in a real S3 server (moto on 127.0.0.1): plain and tarred, one process and
two gloo processes, with the same losses as from disk."""

import csv
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from store_servers import S3Server  # noqa: E402

pytest.importorskip("s3fs", reason="object-store tests need the stores extra (pip install 'myna[stores]')")
pytest.importorskip("moto", reason="S3 tests need moto[server] (the test extra)")

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "espeak_digits"
N_UTTS = 16


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """16 bundled utterances as a corpus folder (relative audio paths) plus a 4-shard tarred copy."""
    from myna.data.tarred import write_tarred_dataset
    from myna.text import train_sentencepiece

    root = tmp_path_factory.mktemp("s3corpus")
    (root / "corpus" / "audio").mkdir(parents=True)
    rows = [json.loads(line) for line in (CORPUS / "train.json").read_text().splitlines()[:N_UTTS]]
    for row in rows:
        shutil.copy(CORPUS / row["audio_filepath"], root / "corpus" / "audio")
        row["audio_filepath"] = "audio/" + Path(row["audio_filepath"]).name
    (root / "corpus" / "train.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_tarred_dataset(str(root / "corpus" / "train.json"), root / "corpus" / "tarred", 4)
    train_sentencepiece([r["text"] for r in rows], root / "tok", vocab_size=20)
    return root


@pytest.fixture(scope="module")
def bucket(corpus):
    with S3Server() as s3:
        s3.upload(corpus / "corpus", "speech", prefix="digits")
        yield s3


@pytest.fixture
def s3_env(bucket, tmp_path, monkeypatch):
    for key, value in bucket.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MYNA_DATA_STORE_CACHE_DIR", str(tmp_path / "cache"))
    return bucket


def _sources(root: str, tarred: bool) -> dict:
    if tarred:
        return {"manifest_filepath": f"{root}/tarred/tarred_audio_manifest.json", "is_tarred": True,
                "tarred_audio_filepaths": f"{root}/tarred/audio__OP_0..3_CL_.tar", "shuffle_n": 8}
    return {"manifest_filepath": f"{root}/train.json"}


def _train_losses(exp: Path, overrides: list[str]) -> list[float]:
    from myna.cli import main

    args = ["train", str(REPO / "conf" / "contextnet_rnnt_dummy.yaml"), f"exp_manager.exp_dir={exp}",
            "trainer.max_steps=4", "trainer.log_every_n_steps=1", "trainer.val_check_interval=100",
            "model.train_ds.batch_size=4", "trainer.enable_progress_bar=false", "exp_manager.plot_learning_curve=false",
            "exp_manager.checkpoint_every_n_steps=100"] + overrides
    assert main(args) == 0
    with open(next(exp.glob("logs/version_*/metrics.csv"))) as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")]


def test_tarred_training_from_s3_has_the_losses_of_training_from_disk(corpus, s3_env, tmp_path):
    """Same seed, same shards: the loss curve from s3:// equals the one from disk step for step."""
    common = [f"model.tokenizer.dir={corpus / 'tok'}"]
    curves = {}
    for name, root in (("disk", str(corpus / "corpus")), ("s3", "s3://speech/digits")):
        overrides = common + [f"model.train_ds.{k}={str(v).lower() if isinstance(v, bool) else v}"
                              for k, v in _sources(root, tarred=True).items()]
        curves[name] = _train_losses(tmp_path / name, overrides)
    assert len(curves["disk"]) == 4 and curves["s3"] == curves["disk"]
    from myna.data.stores import cache_path

    assert cache_path("s3://speech/digits/tarred/tarred_audio_manifest.json").is_file()
    assert not cache_path("s3://speech/digits/tarred/audio_0.tar").exists()  # shards stream, never cached


def _ddp_worker(rank, world_size, port, env, corpus, out):
    import torch.distributed as dist
    from omegaconf import OmegaConf

    os.environ.update(env)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size)})
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    from myna.config import load_config
    from myna.data.factory import build_loader
    from myna.interop.adapter import build_model
    from myna.text import load_tokenizer

    torch.manual_seed(0)
    cfg = load_config(REPO / "conf" / "contextnet_rnnt_dummy.yaml")
    tokenizer = load_tokenizer(Path(corpus) / "tok")
    results = {}
    for kind in ("plain", "tarred"):
        section = {**OmegaConf.to_container(cfg.model.train_ds, resolve=True), "batch_size": 4,
                   "use_semi_sorted_batching": False, **_sources("s3://speech/digits", kind == "tarred")}
        loader = build_loader(section, tokenizer, train=True, seed=1, name="train_ds", world_size=world_size,
                              rank=rank)
        model = torch.nn.parallel.DistributedDataParallel(build_model(cfg.model, tokenizer))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses = []
        for step, batch in zip(range(2), loader):
            loss = model(batch["audio"], batch["audio_lengths"], batch["tokens"], batch["token_lengths"],
                         step=step)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().item()
        results[kind] = {"losses": losses, "checksum": checksum}
    dist.barrier()
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def test_two_gloo_processes_train_from_s3_plain_and_tarred(corpus, s3_env, tmp_path):
    """Each rank builds its loader from s3:// URLs (rank 0 caches the plain manifest and its audio
    while rank 1 waits at the process group's barrier; shards stream) and takes DDP steps."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                      "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "MYNA_DATA_STORE_CACHE_DIR")}
    ctx = mp.spawn(_ddp_worker, args=(2, port, env, str(corpus), str(tmp_path)), nprocs=2, join=False)
    start = time.monotonic()
    while not ctx.join(timeout=1):
        if time.monotonic() - start > 300:
            for p in ctx.processes:
                p.kill()
            pytest.fail("two-process training from S3 hung")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for kind in ("plain", "tarred"):
        assert all(len(r[kind]["losses"]) == 2 and all(map(torch.isfinite, torch.tensor(r[kind]["losses"])))
                   for r in ranks)
        assert ranks[0][kind]["checksum"] == pytest.approx(ranks[1][kind]["checksum"], rel=1e-12)  # DDP in sync
    from myna.data.stores import cache_path

    assert len(list(cache_path("s3://speech/digits/train.json").parent.glob("audio/*.flac"))) == N_UTTS
