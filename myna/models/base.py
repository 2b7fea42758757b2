"""What every myna speech model shares: featurizer and encoder stages, transcription, CTC loss."""

from __future__ import annotations

import torch
from torch import nn

from myna.decoding.greedy import Hypothesis

__all__ = ["SpeechModel"]


class SpeechModel(nn.Module):
    """Featurizer -> (SpecAugment in training) -> encoder, and greedy transcription on top.

    Subclasses add their heads and implement ``forward`` (training losses), ``eval_loss``
    (the validation loss from encoder output) and ``decode`` (encoder output -> hypotheses).
    Attribute names follow NeMo's, so NeMo state dicts load by name.
    """

    def __init__(self, preprocessor: nn.Module, encoder: nn.Module, spec_augment: nn.Module | None = None,
                 tokenizer=None):
        super().__init__()
        self.preprocessor = preprocessor
        self.encoder = encoder
        self.spec_augmentation = spec_augment
        self.tokenizer = tokenizer

    def featurize(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) float32 waveform, (B,) int64 -> features (B, T, F), lengths (B,)."""
        return self.preprocessor(audio, audio_lengths)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B,) -> encoded (B, T', D), lengths (B,). SpecAugment applies in training."""
        if self.training and self.spec_augmentation is not None:
            features = self.spec_augmentation(features, lengths)
        return self.encoder(features, lengths)

    def eval_loss(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor, tokens: torch.Tensor,
                  token_lengths: torch.Tensor) -> torch.Tensor:
        """Scalar loss from encoder output (B, T', D) and targets (B, U), for validation."""
        raise NotImplementedError

    def decode(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> list[Hypothesis]:
        """Greedy hypotheses for encoder output (B, T', D)."""
        raise NotImplementedError

    @torch.inference_mode()
    def transcribe(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> list[Hypothesis]:
        """Greedy transcripts for a padded batch (B, L) of float waveforms."""
        features, lengths = self.featurize(audio, audio_lengths)
        encoded, encoded_lengths = self.encoder(features, lengths)
        return self.decode(encoded, encoded_lengths)

    def _attach_text(self, hyps: list[Hypothesis]) -> list[Hypothesis]:
        if self.tokenizer is not None:
            for hyp in hyps:
                hyp.text = self.tokenizer.decode(hyp.tokens)
        return hyps
