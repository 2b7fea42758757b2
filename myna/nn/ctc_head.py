"""CTC head: NeMo's ``ConvASRDecoder``, a 1x1 Conv1d to V+1 classes (blank = V) + log_softmax;
or, for Hugging Face's ``Wav2Vec2ForCTC``, to V classes with one vocabulary entry as blank.

Parameter names equal NeMo's keys minus the leading ``decoder.`` (``ctc_decoder.`` in hybrid
models): ``decoder_layers.0.weight`` (V+1, D, 1) and ``decoder_layers.0.bias`` (V+1,).

>>> head = CTCHead(feat_in=96, num_classes=128)
>>> head(torch.randn(2, 50, 96)).shape
torch.Size([2, 50, 129])
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from myna.nn.init import init_weights

__all__ = ["CTCHead"]


class CTCHead(nn.Module):
    """Linear (1x1 conv) projection of encoder frames to CTC log-probabilities.

    :param feat_in: D, encoder output size.
    :param num_classes: V, vocabulary size excluding blank; the output has V+1 classes, blank = V.
    :param init_mode: weight init, one of :data:`~myna.nn.init.INIT_MODES` (NeMo's default
        ``xavier_uniform``) or None (torch default).
    :param blank_id: None (NeMo: a blank class is added after the vocabulary), or the vocabulary
        id that serves as blank, with V outputs (Hugging Face's CTC models use ``<pad>``, id 0).
    """

    def __init__(self, feat_in: int, num_classes: int, init_mode: Optional[str] = "xavier_uniform",
                 blank_id: Optional[int] = None) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"CTCHead: num_classes={num_classes} must be > 0")
        self.feat_in = int(feat_in)
        self.vocab_size = int(num_classes)
        if blank_id is None:
            self.num_classes_with_blank = self.vocab_size + 1
            self.blank_idx = self.vocab_size
        else:
            if not 0 <= blank_id < self.vocab_size:
                raise ValueError(f"CTCHead: blank_id={blank_id} must be a vocabulary id in [0, {self.vocab_size})")
            self.num_classes_with_blank = self.vocab_size
            self.blank_idx = int(blank_id)
        self.decoder_layers = nn.Sequential(nn.Conv1d(self.feat_in, self.num_classes_with_blank, 1, bias=True))
        self.apply(lambda module: init_weights(module, init_mode))

    def logits(self, encoder_out: torch.Tensor) -> torch.Tensor:
        """:param encoder_out: (B, T, D) float. :return: (B, T, V+1) raw logits."""
        conv = self.decoder_layers[0]
        # A 1x1 conv is a linear map; apply it on (B, T, D) without transposing twice.
        return nn.functional.linear(encoder_out, conv.weight.squeeze(-1), conv.bias)

    def forward(self, encoder_out: torch.Tensor) -> torch.Tensor:
        """:param encoder_out: (B, T, D) float. :return: (B, T, V+1) log-probabilities (blank =
        :attr:`blank_idx`; V classes when the blank is a vocabulary entry)."""
        return self.logits(encoder_out).log_softmax(dim=-1)
