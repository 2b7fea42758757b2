"""Memory savers for RNN-T fine-tuning: each is a config switch, and each leaves the maths alone."""

import json
import logging
import sys

import pytest
import torch
import yaml

import myna
from myna.data.manifest import filter_entries, read_manifest
from myna.interop.adapter import build_model
from myna.losses.fused_joint import fused_joint_loss
from myna.losses.rnnt import transducer_loss
from myna.nn.joint import RNNTJoint
from myna.text import load_tokenizer
from myna.training.module import build_optimizer

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _batch(seed=0, batch=3):
    gen = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, 16000, generator=gen) * 0.1
    audio_lengths = torch.tensor([16000, 11000, 7000][:batch])
    tokens = torch.randint(0, 128, (batch, 6), generator=gen)
    token_lengths = torch.tensor([6, 3, 0][:batch])  # includes an empty transcript
    return audio, audio_lengths, tokens, token_lengths


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _fixture_config(nemo_fixtures, name):
    cfg = yaml.safe_load((nemo_fixtures / f"{name}_model_config.yaml").read_text())
    return {k: v for k, v in cfg.items() if k not in ("train_ds", "validation_ds", "test_ds", "optim")}


# ---- sub-batched joint + loss ------------------------------------------------------------------
@pytest.mark.parametrize("fused_batch_size", [1, 2])
def test_fused_joint_matches_unfused_loss_and_gradients(nemo_fixtures, fused_batch_size):
    model = myna.load(nemo_fixtures / "conformer_rnnt_bpe.nemo")  # eval: no dropout, no SpecAugment
    batch = _batch()
    model.fused_batch_size = 0
    reference = model(*batch)["loss"]
    reference.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    model.fused_batch_size = fused_batch_size
    loss = model(*batch)["loss"]
    loss.backward()
    got = _grads(model)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fused_joint_loss_without_grad_equals_plain_loss():
    torch.manual_seed(0)
    joint = RNNTJoint(encoder_hidden=16, pred_hidden=12, joint_hidden=24, num_classes=10)
    enc, pred = torch.randn(5, 20, 16), torch.randn(5, 7, 12)
    targets = torch.randint(0, 10, (5, 6))
    enc_len, tgt_len = torch.tensor([20, 13, 17, 5, 20]), torch.tensor([6, 2, 0, 3, 6])
    with torch.no_grad():
        fused = fused_joint_loss(joint, enc, pred, targets, enc_len, tgt_len, blank=10, fused_batch_size=2)
        plain = transducer_loss(joint(enc, pred), targets, enc_len, tgt_len, blank=10)
    torch.testing.assert_close(fused, plain)


@pytest.mark.parametrize("joint_keys, expected", [
    ({"fuse_loss_wer": True, "fused_batch_size": 4}, 4),
    ({"fused_batch_size": 2}, 2),  # no fuse_loss_wer key: on
    ({"fuse_loss_wer": False, "fused_batch_size": 4}, 0),  # NeMo ignores the size then, so does myna
])
def test_build_model_reads_joint_fused_batch_size(nemo_fixtures, joint_keys, expected):
    cfg = _fixture_config(nemo_fixtures, "conformer_rnnt_bpe")
    cfg["joint"] = {k: v for k, v in cfg["joint"].items() if k not in ("fuse_loss_wer", "fused_batch_size")}
    cfg["joint"].update(joint_keys)
    model = build_model(cfg, load_tokenizer(nemo_fixtures / "tokenizer"))
    assert model.fused_batch_size == expected


# ---- mixed precision ---------------------------------------------------------------------------
@pytest.mark.parametrize("fused_batch_size", [0, 2])
def test_bf16_autocast_training_step_on_cpu_is_finite_and_close(nemo_fixtures, fused_batch_size):
    model = myna.load(nemo_fixtures / "conformer_rnnt_bpe.nemo")
    model.fused_batch_size = fused_batch_size
    batch = _batch()
    reference = model(*batch)["loss"].item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(*batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert abs(loss.item() - reference) < 0.05 * abs(reference)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer = build_optimizer(model.parameters(), {"name": "adamw", "lr": 1e-3})
    optimizer.step()


# ---- gradient checkpointing --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["conformer_rnnt_bpe", "contextnet_rnnt_bpe"])
def test_gradient_checkpointing_gives_identical_gradients_and_bn_stats(nemo_fixtures, name):
    cfg = _fixture_config(nemo_fixtures, name)
    tokenizer = load_tokenizer(nemo_fixtures / "tokenizer")
    runs = []
    for checkpointing in (False, True):
        cfg["encoder"]["gradient_checkpointing"] = checkpointing
        torch.manual_seed(0)
        model = build_model(cfg, tokenizer).train()  # dropout, SpecAugment and BatchNorm updates on
        assert model.encoder.gradient_checkpointing is checkpointing
        torch.manual_seed(1)
        loss = model(*_batch())["loss"]
        loss.backward()
        buffers = {n: b.clone() for n, b in model.named_buffers() if "running" in n or "num_batches" in n}
        runs.append((loss.detach(), _grads(model), buffers))
    (loss_a, grads_a, bufs_a), (loss_b, grads_b, bufs_b) = runs
    torch.testing.assert_close(loss_b, loss_a)
    assert grads_a.keys() == grads_b.keys() and bufs_a.keys() == bufs_b.keys() and bufs_a
    for key in grads_a:
        torch.testing.assert_close(grads_b[key], grads_a[key], rtol=1e-5, atol=1e-7, msg=key)
    for key in bufs_a:
        torch.testing.assert_close(bufs_b[key], bufs_a[key], msg=key)  # statistics advance once per step


# ---- 8-bit AdamW -------------------------------------------------------------------------------
def test_adamw8bit_without_bitsandbytes_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if not installed
    with pytest.raises(ValueError, match="adamw8bit needs bitsandbytes: pip install bitsandbytes"):
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], {"name": "adamw8bit", "lr": 1e-3})


def test_adamw8bit_keeps_8_bit_state_and_follows_adamw():
    pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    start = torch.randn(4096, 64)
    eight, full = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt8 = build_optimizer([eight], {"name": "adamw8bit", "lr": 1e-2})
    opt32 = build_optimizer([full], {"name": "adamw", "lr": 1e-2})
    for _ in range(3):
        for p, opt in ((eight, opt8), (full, opt32)):
            (p ** 2).sum().backward()
            opt.step()
            opt.zero_grad()
    assert opt8.state[eight]["state1"].dtype == torch.uint8
    moved = (full.detach() - start).abs().mean()
    assert (eight.detach() - full.detach()).abs().mean() < 0.1 * moved


# ---- max-duration filter -----------------------------------------------------------------------
def test_recipes_max_duration_filter_drops_and_counts_long_utterances(tmp_path, caplog):
    recipe = yaml.safe_load((REPO / "conf" / "conformer_transducer_bpe_large.yaml").read_text())
    max_duration = recipe["model"]["train_ds"]["max_duration"]
    assert max_duration == 20.0
    manifest = tmp_path / "train.json"
    durations = [3.0, 19.9, 20.0, 20.5, 35.0]
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": d, "text": "x"}) + "\n"
                                for i, d in enumerate(durations)))
    with caplog.at_level(logging.WARNING, logger="myna.data"):
        kept, report = filter_entries(read_manifest(manifest), max_duration=max_duration, name="train_ds")
    assert [e.duration for e in kept] == [3.0, 19.9, 20.0]
    assert report.num_dropped == 2 and report.dropped == {"duration > 20.0 s": (2, 55.5)}
    assert "dropped 2 with duration > 20.0 s" in caplog.text
