"""TransducerModel: the memory savers (sub-batched joint, bf16 autocast, gradient checkpointing) leave
the maths alone, and the model says how it decodes."""

import pytest
import torch
import yaml

import myna
from myna.interop.adapter import build_model
from myna.training.module import build_optimizer

RUN_ONLY = ("train_ds", "validation_ds", "test_ds", "optim")


def _batch(vocab, seed=0, batch=3):
    gen = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, 16000, generator=gen) * 0.1
    audio_lengths = torch.tensor([16000, 11000, 7000][:batch])
    tokens = torch.randint(0, vocab, (batch, 6), generator=gen)
    token_lengths = torch.tensor([6, 3, 0][:batch])  # includes an empty transcript
    return audio, audio_lengths, tokens, token_lengths


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _fixture_config(nemo_fixtures, name):
    cfg = yaml.safe_load((nemo_fixtures / f"{name}_model_config.yaml").read_text())
    return {k: v for k, v in cfg.items() if k not in RUN_ONLY}


# ---- sub-batched joint + loss ------------------------------------------------------------------
@pytest.mark.parametrize("fused_batch_size", [1, 2])
def test_fused_joint_matches_unfused_loss_and_gradients(nemo_fixtures, transducer_model, fused_batch_size):
    model = myna.load(nemo_fixtures / f"{transducer_model}.nemo")  # eval: no dropout, no SpecAugment
    batch = _batch(model.tokenizer.vocab_size)
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


# ---- mixed precision ---------------------------------------------------------------------------
@pytest.mark.parametrize("fused_batch_size", [0, 2])
def test_bf16_autocast_training_step_on_cpu_is_finite_and_close(nemo_fixtures, transducer_model, fused_batch_size):
    model = myna.load(nemo_fixtures / f"{transducer_model}.nemo")
    model.fused_batch_size = fused_batch_size
    batch = _batch(model.tokenizer.vocab_size)
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
def test_gradient_checkpointing_gives_identical_gradients_and_bn_stats(nemo_fixtures, transducer_model):
    cfg = _fixture_config(nemo_fixtures, transducer_model)
    tokenizer = myna.load(nemo_fixtures / f"{transducer_model}.nemo").tokenizer
    runs = []
    for checkpointing in (False, True):
        cfg["encoder"]["gradient_checkpointing"] = checkpointing
        torch.manual_seed(0)
        model = build_model(cfg, tokenizer).train()  # dropout, SpecAugment and BatchNorm updates on
        assert model.encoder.gradient_checkpointing is checkpointing
        torch.manual_seed(1)
        loss = model(*_batch(tokenizer.vocab_size))["loss"]
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
