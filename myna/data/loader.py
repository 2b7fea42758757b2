"""From manifest entries to padded batches of audio and token ids.

:class:`AudioToTextDataset` loads one utterance (its ``[offset, offset + duration)`` segment) and
its token ids; :func:`collate_audio_text` pads a list of them into a batch;
:class:`myna.data.sampling.DistributedBatchSampler` orders the batches (random, or semi-sorted by
duration to cut padding); :func:`build_dataloader` wires the three into a resumable loader.

>>> loader = build_dataloader(entries, tokenizer, sample_rate=16000, batch_size=8, shuffle=True)
>>> batch = next(iter(loader))
>>> batch["audio"].shape, batch["tokens"].shape   # (B, Lmax), (B, Umax)
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch.utils.data import Dataset

from myna.audio import AudioError, load_audio
from myna.data.manifest import ManifestEntry
from myna.data.resumable import ResumableDataLoader
from myna.data.sampling import DistributedBatchSampler

__all__ = ["AudioToTextDataset", "load_entry_audio", "collate_audio_text", "build_dataloader"]


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


class AudioToTextDataset(Dataset):
    """Map-style dataset of (audio, token ids) pairs from manifest entries.

    Token ids are computed once, up front (cheap with sentencepiece; it also makes
    :attr:`token_lengths` available to samplers). Audio is read on each ``__getitem__``.

    Args:
        entries: manifest entries (see :func:`myna.data.manifest.read_manifest`).
        tokenizer: anything with ``encode(text) -> list[int]``; None gives empty token
            sequences (for unlabelled audio, e.g. transcription).
        sample_rate: rate in Hz the audio is resampled to.
        skip_bad_audio: an utterance whose audio cannot be used (missing, undecodable, empty,
            NaN/inf samples, shorter than the manifest says) becomes a skip item
            ``{"skip": id, "reason": message, "index": i}`` that :func:`collate_audio_text` passes
            on as the batch's ``skipped`` list, to be counted and named by the consumer (training);
            False raises the AudioError instead.
        augmentor: waveform perturbations applied after decoding
            (:class:`myna.data.augment.WaveformAugmentor`; training only), or None.
    """

    def __init__(self, entries: Sequence[ManifestEntry], tokenizer: Tokenizer | None,
                 sample_rate: int, skip_bad_audio: bool = False, augmentor=None):
        self.entries = list(entries)
        self.sample_rate = sample_rate
        self.skip_bad_audio = skip_bad_audio
        self.augmentor = augmentor
        self.tokens = [tokenizer.encode(e.text) if tokenizer is not None else []
                       for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def durations(self) -> list[float]:
        return [e.duration for e in self.entries]

    @property
    def token_lengths(self) -> list[int]:
        return [len(t) for t in self.tokens]

    def __getitem__(self, index: int) -> dict:
        """One utterance.

        Returns:
            dict with ``audio`` (L,) float32, ``tokens`` (U,) int64, ``index`` (int) and ``id``
            (the entry's ``manifest:line``).

        Raises:
            AudioError: naming the manifest file, line and audio path when the audio is
                missing, empty, unreadable or shorter than the manifest says.
        """
        entry = self.entries[index]
        try:
            audio = load_entry_audio(entry, self.sample_rate)
        except AudioError as err:
            if not self.skip_bad_audio:
                raise
            reason = str(err).removeprefix(f"utterance {entry.where}: ")
            return {"skip": entry.where, "reason": reason, "index": index}
        if self.augmentor is not None:
            audio = self.augmentor(audio, self.sample_rate)
        tokens = torch.tensor(self.tokens[index], dtype=torch.int64)
        return {"audio": audio, "tokens": tokens, "index": index, "id": entry.where}


def load_entry_audio(entry: ManifestEntry, sample_rate: int) -> torch.Tensor:
    """The (L,) float32 waveform of a manifest entry at ``sample_rate``.

    NeMo's semantics: ``duration`` seconds from ``offset`` (a 0 duration means "to the end").
    Audio problems raise AudioError naming the manifest file, line and audio path.
    """
    try:
        return load_audio(entry.audio_filepath, sample_rate, offset=entry.offset,
                          duration=entry.duration if entry.duration > 0 else None)
    except AudioError as err:
        raise AudioError(f"utterance {entry.where}: {err}") from err


def collate_audio_text(items: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Pad a list of dataset items into a batch (right padding with zeros).

    Args:
        items: B dicts with ``audio`` (L_i,) float32, ``tokens`` (U_i,) int64, ``index`` int, and
            optionally ``id`` (str, the utterance's name).

    Returns:
        dict with
        ``audio`` (B, Lmax) float32, zero-padded;
        ``audio_lengths`` (B,) int64, the L_i;
        ``tokens`` (B, Umax) int64, padded with 0 (a real id; use the lengths);
        ``token_lengths`` (B,) int64, the U_i;
        ``indices`` (B,) int64, dataset indices of the rows;
        ``ids`` (list of B str), the utterances' names, when the items have ``id``;
        ``skipped`` (list of (id, reason)) when some items are skip items of a dataset with
        ``skip_bad_audio``; a batch of skip items only is ``{"skipped": [...]}`` alone.
    """
    skipped = [(str(item["skip"]), str(item["reason"])) for item in items if "skip" in item]
    if skipped:
        items = [item for item in items if "skip" not in item]
        if not items:
            return {"skipped": skipped}
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch_size = len(items)
    audio_lengths = torch.tensor([item["audio"].shape[0] for item in items], dtype=torch.int64)
    token_lengths = torch.tensor([item["tokens"].shape[0] for item in items], dtype=torch.int64)
    audio = torch.zeros(batch_size, int(audio_lengths.max()), dtype=torch.float32)
    tokens = torch.zeros(batch_size, int(token_lengths.max()), dtype=torch.int64)
    for row, item in enumerate(items):
        audio[row, : item["audio"].shape[0]] = item["audio"]
        tokens[row, : item["tokens"].shape[0]] = item["tokens"]
    indices = torch.tensor([int(item["index"]) for item in items], dtype=torch.int64)
    batch = {"audio": audio, "audio_lengths": audio_lengths, "tokens": tokens,
             "token_lengths": token_lengths, "indices": indices}
    if all("id" in item for item in items):
        batch["ids"] = [str(item["id"]) for item in items]
    if skipped:
        batch["skipped"] = skipped
    return batch


def build_dataloader(
    entries: Sequence[ManifestEntry],
    tokenizer: Tokenizer | None,
    sample_rate: int,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    semi_sorted: bool = False,
    pin_memory: bool = False,
) -> ResumableDataLoader:
    """A DataLoader yielding :func:`collate_audio_text` batches.

    Args:
        entries: manifest entries (already filtered).
        tokenizer: text -> ids (None: empty token sequences).
        sample_rate: audio rate in Hz.
        batch_size: utterances per batch.
        shuffle: reshuffle every epoch (training); False keeps manifest order (evaluation).
        num_workers: loader processes (0: load in the main process).
        seed: shuffling seed (same seed: same batches, epoch by epoch).
        drop_last: drop utterances so that every batch is full.
        semi_sorted: NeMo's semi-sorted batching (durations plus noise, randomization_factor 0.1).
        pin_memory: pin batches for faster host-to-GPU copies.

    Returns:
        a resumable loader (:class:`myna.data.resumable.ResumableDataLoader`) over batches
        dict(audio (B, Lmax) float32, audio_lengths (B,) int64, tokens (B, Umax) int64,
        token_lengths (B,) int64, indices (B,) int64, ids (list of B str)). Its ``batch_sampler``
        is a :class:`myna.data.sampling.DistributedBatchSampler`.
    """
    dataset = AudioToTextDataset(entries, tokenizer, sample_rate)
    sampler = DistributedBatchSampler(dataset.durations, batch_size, shuffle=shuffle or semi_sorted, seed=seed,
                                      drop_last=drop_last, randomization_factor=0.1 if semi_sorted else None)
    return ResumableDataLoader(dataset, sampler, collate_fn=collate_audio_text, num_workers=num_workers,
                               pin_memory=pin_memory)
