"""Fine-tune a myna (or NeMo) Transducer on a Hugging Face ``datasets.Dataset`` with the HF ``Trainer``.

The dataset needs an ``Audio`` column and a transcript column. Audio is decoded here with
soundfile (from the file path or the stored bytes) and resampled with soxr to the model's rate, so
the ``Audio`` feature may be cast with ``decode=False`` and no audio backend of ``datasets`` is
needed; already decoded rows (``{"array", "sampling_rate"}``) work too. Each row becomes
``{"audio": float32 samples, "tokens": token ids}``; :func:`collate` pads a list of them into the
keyword arguments of ``TransducerModel.forward`` (``audio`` (B, L) float32, ``audio_lengths`` (B,)
int64, ``tokens`` (B, U) int64, ``token_lengths`` (B,) int64), whose output dict carries ``loss``,
which is all ``transformers.Trainer`` needs.

Utterances longer than ``--max-duration`` seconds are dropped and counted (never silently).

    python examples/finetune_hf_datasets.py --model base.nemo --dataset ./my_dataset \\
        --audio-column audio --text-column text --max-steps 2000 --out finetuned.nemo

``--dataset`` is a folder written by ``Dataset.save_to_disk`` (or a ``DatasetDict`` with
``--split``). The result is written with ``save_nemo``: ``myna.load`` and NeMo's
``restore_from`` both read it.
"""

from __future__ import annotations

import argparse
import io
import logging
from typing import Any, Mapping, Sequence

import numpy as np
import torch

log = logging.getLogger("myna.examples.hf")


def decode_audio(value: Mapping[str, Any] | str, sample_rate: int) -> np.ndarray:
    """One ``Audio`` cell -> mono float32 samples (L,) at ``sample_rate``.

    Accepts a decoded cell (``array`` + ``sampling_rate``), an undecoded one (``bytes`` and/or
    ``path``, from ``Audio(decode=False)``) or a plain path.
    """
    import soundfile as sf
    import soxr

    if isinstance(value, str):
        value = {"path": value, "bytes": None}
    if value.get("array") is not None:
        samples, rate = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    elif value.get("bytes"):
        samples, rate = sf.read(io.BytesIO(value["bytes"]), dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
    elif value.get("path"):
        samples, rate = sf.read(value["path"], dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
    else:
        raise ValueError(f"audio cell has neither array, bytes nor path: keys {sorted(value)}")
    if samples.ndim > 1:
        samples = samples.mean(axis=-1)
    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate)
    return np.ascontiguousarray(samples, dtype=np.float32)


def prepare(dataset, tokenizer, sample_rate: int, audio_column: str = "audio", text_column: str = "text",
            max_duration: float | None = None):
    """Map rows to ``{"audio", "tokens"}`` and drop (counting) those longer than ``max_duration`` s.

    Returns:
        (prepared dataset, number of dropped rows).
    """

    def convert(row):
        audio = decode_audio(row[audio_column], sample_rate)
        return {"audio": audio, "tokens": tokenizer.encode(row[text_column]), "duration": len(audio) / sample_rate}

    prepared = dataset.map(convert, remove_columns=dataset.column_names)
    before = len(prepared)
    if max_duration is not None:
        prepared = prepared.filter(lambda row: row["duration"] <= max_duration)
    dropped = before - len(prepared)
    log.warning("dropped %d of %d utterances longer than %s s", dropped, before, max_duration) if dropped else None
    return prepared.remove_columns("duration"), dropped


def collate(rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad prepared rows into ``TransducerModel.forward`` keyword arguments.

    Returns:
        ``audio`` (B, L_max) float32 zero-padded, ``audio_lengths`` (B,) int64, ``tokens``
        (B, U_max) int64 padded with 0, ``token_lengths`` (B,) int64.
    """
    audio = [torch.as_tensor(np.asarray(r["audio"], dtype=np.float32)) for r in rows]
    tokens = [torch.as_tensor(list(r["tokens"]), dtype=torch.int64) for r in rows]
    audio_lengths = torch.tensor([len(a) for a in audio], dtype=torch.int64)
    token_lengths = torch.tensor([len(t) for t in tokens], dtype=torch.int64)
    padded_audio = torch.zeros(len(rows), int(audio_lengths.max()))
    padded_tokens = torch.zeros(len(rows), max(int(token_lengths.max()), 1), dtype=torch.int64)
    for i, (a, t) in enumerate(zip(audio, tokens)):
        padded_audio[i, : len(a)] = a
        padded_tokens[i, : len(t)] = t
    return {"audio": padded_audio, "audio_lengths": audio_lengths, "tokens": padded_tokens,
            "token_lengths": token_lengths}


def training_arguments(output_dir: str, max_steps: int, batch_size: int, lr: float, **overrides):
    """``TrainingArguments`` for a myna model: CPU or GPU as available, our collator's columns kept."""
    from transformers import TrainingArguments

    kwargs = dict(output_dir=output_dir, max_steps=max_steps, per_device_train_batch_size=batch_size,
                  learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1,
                  save_strategy="no", report_to="none", remove_unused_columns=False,
                  dataloader_num_workers=0, use_cpu=not torch.cuda.is_available())
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def finetune(model, train_dataset, output_dir: str, max_steps: int = 100, batch_size: int = 8, lr: float = 1e-4,
             **overrides):
    """Train ``model`` in place with the HF ``Trainer``; returns the trainer (``state.log_history``)."""
    from transformers import Trainer

    config = getattr(model, "config", None)
    if isinstance(config, dict):  # the Trainer sets attributes (use_cache) on model.config
        model.config = _AttributeDict(config)
    model.train()
    try:
        trainer = Trainer(model=model, args=training_arguments(output_dir, max_steps, batch_size, lr, **overrides),
                          train_dataset=train_dataset, data_collator=collate)
        trainer.train()
    finally:
        model.eval()
        if isinstance(config, dict):
            model.config = config
    return trainer


class _AttributeDict(dict):
    """A config dict that also takes attributes (kept outside the dict, so saving is unchanged)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help=".nemo archive to start from (myna's or NeMo's)")
    ap.add_argument("--dataset", required=True, help="folder written by Dataset.save_to_disk")
    ap.add_argument("--split", help="split of a saved DatasetDict")
    ap.add_argument("--audio-column", default="audio")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--max-duration", type=float, default=20.0, help="drop (and count) longer utterances")
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--output-dir", default="hf_finetune")
    ap.add_argument("--out", required=True, help="fine-tuned model (.nemo)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)

    from datasets import load_from_disk

    import myna
    from myna.interop.nemo import save_nemo

    model = myna.load(args.model)
    dataset = load_from_disk(args.dataset)
    if args.split:
        dataset = dataset[args.split]
    sample_rate = int(model.config["preprocessor"].get("sample_rate", 16000))
    train, dropped = prepare(dataset, model.tokenizer, sample_rate, args.audio_column, args.text_column,
                             args.max_duration)
    print(f"{len(train)} utterances ({dropped} dropped, longer than {args.max_duration} s)")
    finetune(model, train, args.output_dir, args.max_steps, args.batch_size, args.lr)
    print(f"model: {save_nemo(model, args.out)}")


if __name__ == "__main__":
    main()
