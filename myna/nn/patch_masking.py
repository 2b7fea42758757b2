"""NeMo's ``MaskedPatchAugmentation``: zero whole time patches (and frequency bands) of a batch.

Every utterance loses the same number of ``patch_size``-frame patches, counted from the
*shortest* utterance of the batch (``mask_patches`` patches, or that fraction of its frames
rounded up to whole patches); each utterance picks its own patches among its complete ones.
Then ``freq_masks`` bands of up to ``freq_width`` bins are zeroed at every frame, padding
included. Unlike SpecAugment it is applied in evaluation too: the self-supervised losses are
computed on the masked steps in every mode.

Draws use python's ``random`` for the patches (NeMo's ``random.sample``) and torch's for the
bands, so a module given generators replays; :meth:`MaskedPatchAugmentation.draw` returns the
mask and :meth:`apply` applies a given one (how recorded NeMo masks replay exactly).

>>> aug = MaskedPatchAugmentation(patch_size=48, mask_patches=0.5, freq_masks=3, freq_width=20)
>>> mask = aug.draw(torch.tensor([260, 210]), frames=272, bins=80)
>>> mask.shape, int(mask[:, :, 79].all(0).sum()) >= 0
(torch.Size([2, 272, 80]), True)
"""

from __future__ import annotations

import random
from typing import Optional

import torch
from torch import nn

__all__ = ["MaskedPatchAugmentation", "PatchTooShortError"]


class PatchTooShortError(ValueError):
    """An utterance has fewer frames than one patch; ``rows`` lists the batch rows."""

    def __init__(self, message: str, rows: list[int]):
        super().__init__(message)
        self.rows = rows


class MaskedPatchAugmentation(nn.Module):
    """Masked patches + frequency bands over (B, T, F) features, in training and evaluation.

    :param patch_size: frames per patch (NeMo 48: 0.48 s at 10 ms). Should be a multiple of the
        contrastive loss' ``combine_time_steps`` so that every masked patch covers whole steps.
    :param mask_patches: >= 1: that many patches per utterance (int); in [0, 1): that fraction of
        the shortest utterance's frames, rounded up to whole patches.
    :param freq_masks: frequency bands per utterance.
    :param freq_width: widest band in bins (a band is ``int(u * freq_width)`` wide).
    :param mask_value: value written into masked cells (0: the losses find masks by value).
    :param rng: python ``random.Random`` for the patches; None uses the global one (as NeMo).
    :param generator: torch generator for the bands; None uses torch's global one (as NeMo).
    """

    def __init__(self, patch_size: int = 48, mask_patches: float = 10.0, freq_masks: int = 0, freq_width: int = 0,
                 mask_value: float = 0.0, rng: Optional[random.Random] = None,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"MaskedPatchAugmentation: patch_size must be an int >= 1, got {patch_size!r}")
        if mask_patches < 0:
            raise ValueError(f"MaskedPatchAugmentation: mask_patches must be >= 0, got {mask_patches!r}")
        for name, value in (("freq_masks", freq_masks), ("freq_width", freq_width)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"MaskedPatchAugmentation: {name} must be an int >= 0, got {value!r}")
        self.patch_size = patch_size
        self.mask_patches = int(mask_patches) if mask_patches >= 1 else float(mask_patches)
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.mask_value = float(mask_value)
        self.rng = rng
        self.generator = generator

    def num_patches(self, lengths: torch.Tensor) -> int:
        """Patches masked in every utterance of a batch with valid frames ``lengths`` (B,).

        :raises PatchTooShortError: an utterance is shorter than one patch (NeMo would mask
            nothing in the whole batch and its losses would fail on zero masked steps).
        """
        short = [i for i, n in enumerate(lengths.tolist()) if n < self.patch_size]
        if short:
            details = ", ".join(f"row {i}: {int(lengths[i])} frames" for i in short)
            raise PatchTooShortError(
                f"utterance(s) shorter than one masked patch of {self.patch_size} frames ({details}); "
                f"remove them (min_duration) or lower model.spec_augment.patch_size", short)
        min_len = int(lengths.min())
        if isinstance(self.mask_patches, float):
            frames = int(min_len * self.mask_patches)
            count = frames // self.patch_size + (frames % self.patch_size != 0)
        else:
            count = self.mask_patches
        if min_len < self.patch_size * count:
            count = min_len // self.patch_size
        return count

    def draw(self, lengths: torch.Tensor, frames: int, bins: int) -> torch.Tensor:
        """A fresh mask for a batch.

        :param lengths: (B,) int valid frames. :param frames: T (padded). :param bins: F.
        :return: (B, T, F) bool, True where a cell is zeroed.
        """
        count = self.num_patches(lengths)
        sample = (self.rng or random).sample
        batch = lengths.shape[0]
        time_hit = torch.zeros(batch, frames, dtype=torch.bool)
        for b, n in enumerate(lengths.tolist()):
            for p in sample(range(int(n) // self.patch_size), count):
                time_hit[b, p * self.patch_size:(p + 1) * self.patch_size] = True
        freq_hit = torch.zeros(batch, bins, dtype=torch.bool)
        if self.freq_masks and self.freq_width:
            widths = (torch.rand(batch, self.freq_masks, generator=self.generator) * self.freq_width).long()
            starts = (torch.rand(batch, self.freq_masks, generator=self.generator) * (bins - widths)).long()
            positions = torch.arange(bins)[None, None, :]
            inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
            freq_hit = inside.any(1)
        return (time_hit[:, :, None] | freq_hit[:, None, :]).to(lengths.device)

    def apply(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F) features with the cells of a (B, T, F) bool ``mask`` set to ``mask_value``."""
        return features.masked_fill(mask, self.mask_value)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mask a batch: (B, T, F) float, (B,) int -> (B, T, F), a new tensor."""
        return self.apply(features, self.draw(lengths.cpu(), features.shape[1], features.shape[2]))
