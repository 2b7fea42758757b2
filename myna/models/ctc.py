"""CTC model: featurizer -> encoder -> CTC head (NeMo's EncDecCTCModelBPE layout)."""

from __future__ import annotations

import torch
from torch import nn

from myna.decoding import CTC_STRATEGIES
from myna.decoding.greedy import Hypothesis, ctc_greedy_search
from myna.losses.ctc import ctc_loss_mean_batch
from myna.models.base import SpeechModel

__all__ = ["CTCModel"]


class CTCModel(SpeechModel):
    """Encoder + CTC head. Attribute names follow NeMo's (``decoder`` is the CTC head).

    Args:
        preprocessor: ``(B, L), (B,) -> (B, T, F), (B,)``.
        encoder: ``(B, T, F), (B,) -> (B, T', D), (B,)``.
        decoder: CTC head ``(B, T', D) -> (B, T', V+1)`` log-probs (blank: ``decoder.blank_idx``,
            the last class unless the head says otherwise).
        spec_augment: optional training-time masking.
        tokenizer: object with ``decode(ids) -> str``.
    """

    def __init__(self, preprocessor: nn.Module, encoder: nn.Module, decoder: nn.Module,
                 spec_augment: nn.Module | None = None, tokenizer=None):
        super().__init__(preprocessor, encoder, spec_augment, tokenizer)
        self.decoder = decoder
        self.blank_id = decoder.blank_idx

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor, tokens: torch.Tensor,
                token_lengths: torch.Tensor, **unused) -> dict[str, torch.Tensor]:
        """CTC loss of a batch: audio (B, L), (B,); tokens (B, U), (B,)."""
        features, lengths = self.featurize(audio, audio_lengths)
        encoded, encoded_lengths = self.encode(features, lengths)
        return {"loss": self.forward_ctc(encoded, encoded_lengths, tokens, token_lengths),
                "encoded_lengths": encoded_lengths}

    def forward_ctc(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor, tokens: torch.Tensor,
                    token_lengths: torch.Tensor) -> torch.Tensor:
        """Scalar CTC loss (NeMo's ``mean_batch``) from encoder output (B, T', D) and targets (B, U)."""
        return ctc_loss_mean_batch(self.decoder(encoded), encoded_lengths, tokens, token_lengths, self.blank_id)

    eval_loss = forward_ctc

    @property
    def decoding_strategies(self) -> tuple[str, ...]:
        """Best path and prefix beam search (``greedy`` / ``beam`` mean these for a CTC model)."""
        return CTC_STRATEGIES

    def ctc_log_probs(self, encoded: torch.Tensor) -> torch.Tensor:
        """(B, T', D) encoder output -> (B, T', C) CTC log-probs (blank: :attr:`blank_id`)."""
        return self.decoder(encoded)

    def decode(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> list[Hypothesis]:
        """Best-path CTC decoding of encoder output (B, T', D)."""
        return self._attach_text(ctc_greedy_search(self.ctc_log_probs(encoded), encoded_lengths, self.blank_id))
