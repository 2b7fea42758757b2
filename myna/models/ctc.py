"""CTC model: featurizer -> encoder -> CTC head (NeMo's EncDecCTCModelBPE layout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from myna.decoding.greedy import Hypothesis, ctc_greedy_search

__all__ = ["CTCModel"]


class CTCModel(nn.Module):
    """Encoder + CTC head. Attribute names follow NeMo's (``decoder`` is the CTC head).

    Args:
        preprocessor: ``(B, L), (B,) -> (B, T, F), (B,)``.
        encoder: ``(B, T, F), (B,) -> (B, T', D), (B,)``.
        decoder: CTC head ``(B, T', D) -> (B, T', V+1)`` log-probs, blank last.
        spec_augment: optional training-time masking.
        tokenizer: object with ``decode(ids) -> str``.
    """

    def __init__(self, preprocessor: nn.Module, encoder: nn.Module, decoder: nn.Module,
                 spec_augment: nn.Module | None = None, tokenizer=None):
        super().__init__()
        self.preprocessor = preprocessor
        self.encoder = encoder
        self.decoder = decoder
        self.spec_augmentation = spec_augment
        self.tokenizer = tokenizer
        self.blank_id = decoder.num_classes_with_blank - 1

    def featurize(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) float32, (B,) int64 -> features (B, T, F), lengths (B,)."""
        return self.preprocessor(audio, audio_lengths)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B,) -> (B, T', D), (B,); SpecAugment applies in training."""
        if self.training and self.spec_augmentation is not None:
            features = self.spec_augmentation(features, lengths)
        return self.encoder(features, lengths)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor, tokens: torch.Tensor,
                token_lengths: torch.Tensor, **unused) -> dict[str, torch.Tensor]:
        """CTC loss: NeMo's ``mean_batch`` (per-utterance summed NLL averaged over the batch)."""
        features, lengths = self.featurize(audio, audio_lengths)
        encoded, encoded_lengths = self.encode(features, lengths)
        return {"loss": self.forward_ctc(encoded, encoded_lengths, tokens, token_lengths),
                "encoded_lengths": encoded_lengths}

    def forward_ctc(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor, tokens: torch.Tensor,
                    token_lengths: torch.Tensor) -> torch.Tensor:
        """Scalar CTC loss from encoder output (B, T', D) and targets (B, U); infinities are zeroed."""
        log_probs = self.decoder(encoded)
        per_utt = F.ctc_loss(log_probs.transpose(0, 1).float(), tokens.long(), encoded_lengths, token_lengths,
                             blank=self.blank_id, reduction="none", zero_infinity=True)
        return per_utt.mean()

    # The training loop validates every model the same way: loss via forward_transducer for
    # Transducers; for CTC models the same name computes the CTC loss.
    def forward_transducer(self, encoded, encoded_lengths, tokens, token_lengths, step=None):
        return {"loss": self.forward_ctc(encoded, encoded_lengths, tokens, token_lengths)}

    @torch.inference_mode()
    def transcribe(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> list[Hypothesis]:
        """Greedy (best-path) transcripts of a padded batch (B, L)."""
        features, lengths = self.featurize(audio, audio_lengths)
        encoded, encoded_lengths = self.encoder(features, lengths)
        return self.decode(encoded, encoded_lengths)

    def decode(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> list[Hypothesis]:
        """Best-path CTC decoding of encoder output (B, T', D)."""
        hyps = ctc_greedy_search(self.decoder(encoded), encoded_lengths, self.blank_id)
        if self.tokenizer is not None:
            for hyp in hyps:
                hyp.text = self.tokenizer.decode(hyp.tokens)
        return hyps
