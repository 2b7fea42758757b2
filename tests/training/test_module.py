"""training/module.py: the Lightning task's losses, validation WER, optimizers and schedules."""

import sys

import lightning as L
import pytest
import torch

from myna.decoding.greedy import Hypothesis
from myna.interop.adapter import build_model
from myna.text import train_sentencepiece
from myna.training.module import ASRTask, build_optimizer

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TINY_CTC = {
    "preprocessor": {"features": 16, "n_fft": 256, "window_size": 0.016, "window_stride": 0.01, "pad_to": 0},
    "encoder": {"_target_": "ConformerEncoder", "feat_in": 16, "n_layers": 1, "d_model": 16, "n_heads": 2,
                "conv_kernel_size": 3},
    "decoder": {"_target_": "ConvASRDecoder"},
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [" ".join(WORDS[(i + j) % 10] for j in range(3)) for i in range(60)]
    return train_sentencepiece(texts, tmp_path_factory.mktemp("tok"), vocab_size=20)


def _batch(tokenizer, texts, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = [tokenizer.encode(t) for t in texts]
    tokens = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = torch.tensor(row)
    return {"audio": torch.randn(len(texts), 8000, generator=gen) * 0.1,
            "audio_lengths": torch.tensor([8000, 6000][: len(texts)]),
            "tokens": tokens, "token_lengths": torch.tensor([len(r) for r in ids])}


def _task(tokenizer, **kwargs):
    torch.manual_seed(0)
    model = build_model(TINY_CTC, tokenizer)
    return ASRTask(model, {"name": "adamw", "lr": 1e-2, "sched": None}, max_steps=4, **kwargs)


def _logged(task):
    logged = {}
    task.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    return logged


@pytest.mark.parametrize("decoded, wer", [("reference", 0.0), ("empty", 1.0)])
def test_validation_wer_compares_decoded_text_with_the_batch_references(tokenizer, monkeypatch, decoded, wer):
    task = _task(tokenizer)
    texts = ["one two three", "four five"]
    batch = _batch(tokenizer, texts)
    hyps = [Hypothesis(tokens=tokenizer.encode(t) if decoded == "reference" else [], text=t if decoded == "reference"
                       else "") for t in texts]
    monkeypatch.setattr(task.model, "decode", lambda encoded, lengths: hyps)
    logged = _logged(task)
    task.eval()
    with torch.no_grad():
        task.validation_step(batch, 0)
    task.on_validation_epoch_end()
    assert logged["val_wer"] == wer and logged["val_cer"] == wer
    assert logged["val_loss"] > 0  # compute_eval_loss: the model's own loss on the validation batch
    task.on_validation_epoch_end()  # state was reset: a second epoch end without batches logs nothing new
    assert len(logged) == 3


def test_validation_without_eval_loss_logs_only_error_rates(tokenizer):
    task = _task(tokenizer, compute_eval_loss=False)
    logged = _logged(task)
    task.eval()
    with torch.no_grad():
        task.validation_step(_batch(tokenizer, ["one two", "three"]), 0)
    task.on_validation_epoch_end()
    assert set(logged) == {"val_wer", "val_cer"}


def test_a_short_fit_logs_losses_and_lr_and_updates_the_weights(tokenizer, tmp_path):
    task = _task(tokenizer)
    before = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    batches = [_batch(tokenizer, ["one two three", "four five"], seed=i) for i in range(2)]
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
                        limit_val_batches=1, val_check_interval=2, accelerator="cpu")
    loader = torch.utils.data.DataLoader(batches, batch_size=None)  # the batches as they are
    trainer.fit(task, train_dataloaders=loader, val_dataloaders=loader)
    metrics = trainer.callback_metrics
    assert {"train_loss", "lr", "val_wer", "val_cer", "val_loss"} <= set(metrics)
    assert torch.isfinite(metrics["train_loss"]) and trainer.global_step == 2
    assert any(not torch.equal(p, before[n]) for n, p in task.model.named_parameters())


def test_configure_optimizers_steps_the_schedule_every_optimizer_step(tokenizer):
    task = _task(tokenizer)
    assert isinstance(task.configure_optimizers(), torch.optim.AdamW)  # no schedule
    task.optim_cfg["sched"] = {"name": "CosineAnnealing", "warmup_steps": 2, "min_lr": 0.0}
    configured = task.configure_optimizers()
    assert configured["lr_scheduler"]["interval"] == "step"
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # warm-up to the base lr, then cosine decay towards min_lr by max_steps
    assert lrs[0] < max(lrs) == pytest.approx(1e-2) and lrs[-1] < max(lrs)


@pytest.mark.parametrize("name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                                       ("sgd", torch.optim.SGD)])
def test_build_optimizer_reads_the_optim_section(name, cls):
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer([param], {"name": name, "lr": 0.5, "weight_decay": 0.01, "momentum": 0.9,
                                          "betas": [0.8, 0.9]})
    assert isinstance(optimizer, cls)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.5 and group["weight_decay"] == 0.01
    assert group.get("betas", (0.8, 0.9)) == (0.8, 0.9) and group.get("momentum", 0.9) == 0.9


def test_unknown_optimizer_is_an_error_naming_it():
    with pytest.raises(ValueError, match="model.optim.name='lamb'"):
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], {"name": "lamb", "lr": 1e-3})


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


class _TwoRankTrainer:
    """A stand-in for a 2-rank trainer whose all-reduce reports that another rank skipped."""
    world_size = 2
    global_step = 0

    class strategy:
        @staticmethod
        def reduce(flag, reduce_op="sum"):
            return flag + 1.0  # the other rank's flag: it skipped this batch

    optimizers = []


def test_a_batch_another_rank_skips_gets_no_update_here_but_still_runs_a_backward(tokenizer):
    task = _task(tokenizer)
    task._trainer = _TwoRankTrainer()
    batch = _batch(tokenizer, ["one two three", "four five"])
    loss = task.training_step(batch, 0)
    # a zero loss over every parameter: this rank's backward matches the others' gradient all-reduce
    assert float(loss) == 0.0 and loss.requires_grad
    loss.backward()
    params = [p for p in task.parameters() if p.requires_grad]
    assert all(p.grad is not None and not p.grad.any() for p in params)
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    before = [p.detach().clone() for p in params]
    task.guard.on_before_optimizer_step(None, task, optimizer)
    optimizer.step()
    assert all(p.grad is None for p in params)
    assert all(torch.equal(a, p) for a, p in zip(before, params))
    assert not optimizer.state  # no moments were started either


def test_val_loss_on_several_ranks_counts_each_utterance_once_not_the_padded_repeats(tokenizer, monkeypatch):
    """Rank 1's share is padded with a repeat of rank 0's first utterance (equal batch counts): the
    repeat counts once in val_loss, as in the WER; each utterance's loss is its own (batch of one)."""
    import myna.training.module as module

    class Ranks:
        world_size = 2

    texts = ["one two three", "four five", "six"]
    whole = _batch(tokenizer, texts + ["seven"])
    whole["audio_lengths"] = torch.tensor([8000, 6000, 7000, 5000])
    rows = [{k: v[i:i + 1] for k, v in whole.items()} for i in range(3)]
    share0 = {k: torch.cat([rows[0][k], rows[1][k]]) if k != "tokens" else whole["tokens"][:2] for k in rows[0]}
    share1 = {k: torch.cat([rows[2][k], rows[0][k]]) if k != "tokens" else whole["tokens"][[2, 0]] for k in rows[0]}
    share0["ids"], share1["ids"] = ["m:1", "m:2"], ["m:3", "m:1"]  # rank 1's second row repeats m:1
    task = _task(tokenizer)
    task.eval()
    per_rank = []
    for share in (share0, share1):
        task._trainer = Ranks()
        task._val_row_losses, task._val_refs, task._val_hyps, task._val_ids = [], [], [], []
        with torch.no_grad():
            task.validation_step(share, 0)
        per_rank.append((list(task._val_row_losses), list(zip(task._val_ids, task._val_refs, task._val_hyps))))
    monkeypatch.setattr(module, "_all_ranks", lambda mine: [r[0] if len(mine[0]) == 2 else r[1] for r in per_rank])
    logged = _logged(task)
    task._val_ids = ["m:3", "m:1"]
    task.on_validation_epoch_end()
    task._trainer = None  # one process, each utterance alone in its batch: the reference per-utterance losses
    alone = []
    for i in range(3):
        task._val_losses = []
        with torch.no_grad():
            task.validation_step({k: v[i:i + 1] for k, v in whole.items()}, 0)
        alone.append(task._val_losses[0])
    assert logged["val_loss"] == pytest.approx(sum(alone) / 3, rel=1e-5)
    with_repeat = (sum(alone) + alone[0]) / 4
    assert abs(with_repeat - sum(alone) / 3) > 1e-4  # the repeat would have moved it
