"""RNN-T prediction network: NeMo's ``RNNTDecoder`` (embedding + LSTM), with a step API for decoding.

Token ids are 0..V-1 and the blank id is V (the last index). With ``blank_as_pad`` the embedding
has V+1 rows and the blank row is the (zero) padding row, so feeding blank yields a zero input
vector. Training prepends a zero "start" vector, so the output has U+1 frames: frame u is the
prediction after the first u tokens.

Parameter names equal NeMo's keys minus the leading ``decoder.``:
``prediction.embed.weight`` and ``prediction.dec_rnn.lstm.{weight,bias}_{ih,hh}_l{k}``.

>>> net = RNNTPredictionNetwork(vocab_size=128, pred_hidden=96)
>>> out, (h, c) = net(torch.randint(0, 128, (2, 7)))
>>> out.shape, h.shape
(torch.Size([2, 8, 96]), torch.Size([1, 2, 96]))
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["RNNTPredictionNetwork", "LSTMState"]

LSTMState = tuple[torch.Tensor, torch.Tensor]
"""(h, c): h (L, B, H_out), c (L, B, H_rnn); H_out == H_rnn unless the LSTM projects."""


class RNNTPredictionNetwork(nn.Module):
    """Embedding + (multi-layer) LSTM prediction network, NeMo ``RNNTDecoder`` layout.

    :param vocab_size: V, tokens excluding blank; the blank id is V.
    :param pred_hidden: H, embedding size and output size.
    :param pred_rnn_layers: LSTM layers.
    :param dropout: dropout between LSTM layers and on the LSTM output (NeMo's ``LSTMDropout``).
    :param forget_gate_bias: initial forget-gate bias of ``bias_ih`` (NeMo: 1.0); the forget part
        of ``bias_hh`` is multiplied by ``hidden_hidden_bias_scale`` (0.0 zeroes it). None: torch init.
    :param t_max: if set, chrono initialisation of the LSTM biases instead of ``forget_gate_bias``.
    :param weights_init_scale: multiplies all LSTM weights and biases after init.
    :param hidden_hidden_bias_scale: see ``forget_gate_bias``.
    :param blank_as_pad: the embedding has a V+1-th zero row for blank (NeMo's default, required
        for batched decoding); otherwise V rows and blank inputs are mapped to zeros explicitly.
    :param rnn_hidden_size: LSTM cell size if larger than ``pred_hidden`` (the LSTM then projects
        to ``pred_hidden``); -1 means ``pred_hidden``.
    :param random_state_sampling: in training, start from N(0, 1) states instead of zeros.
    """

    def __init__(
        self,
        vocab_size: int,
        pred_hidden: int,
        pred_rnn_layers: int = 1,
        dropout: float = 0.0,
        forget_gate_bias: Optional[float] = 1.0,
        t_max: Optional[int] = None,
        weights_init_scale: float = 1.0,
        hidden_hidden_bias_scale: float = 0.0,
        blank_as_pad: bool = True,
        rnn_hidden_size: int = -1,
        random_state_sampling: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.blank_idx = self.vocab_size
        self.pred_hidden = int(pred_hidden)
        self.pred_rnn_layers = int(pred_rnn_layers)
        self.blank_as_pad = bool(blank_as_pad)
        self.random_state_sampling = bool(random_state_sampling)
        self.rnn_hidden_size = int(rnn_hidden_size) if rnn_hidden_size > 0 else self.pred_hidden
        proj_size = self.pred_hidden if self.pred_hidden < self.rnn_hidden_size else 0
        if self.blank_as_pad:
            embed = nn.Embedding(self.vocab_size + 1, self.pred_hidden, padding_idx=self.blank_idx)
        else:
            embed = nn.Embedding(self.vocab_size, self.pred_hidden)
        dec_rnn = _LSTMDropout(
            self.pred_hidden, self.rnn_hidden_size, self.pred_rnn_layers, dropout, proj_size,
            forget_gate_bias, t_max, weights_init_scale, hidden_hidden_bias_scale,
        )
        self.prediction = nn.ModuleDict({"embed": embed, "dec_rnn": dec_rnn})

    @property
    def output_dim(self) -> int:
        """H, the size of each output frame."""
        return self.pred_hidden

    def initial_state(
        self, batch: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None
    ) -> LSTMState:
        """Zero LSTM state for ``batch`` utterances (random normal in training with
        ``random_state_sampling``): h (L, B, H), c (L, B, H_rnn), on the module's device/dtype
        unless given."""
        param = self.prediction["embed"].weight
        device = param.device if device is None else device
        dtype = param.dtype if dtype is None else dtype
        make = torch.randn if (self.random_state_sampling and self.training) else torch.zeros
        h = make(self.pred_rnn_layers, batch, self.pred_hidden, device=device, dtype=dtype)
        c = make(self.pred_rnn_layers, batch, self.rnn_hidden_size, device=device, dtype=dtype)
        return h, c

    def forward(
        self,
        targets: torch.Tensor,
        target_lengths: Optional[torch.Tensor] = None,
        state: Optional[LSTMState] = None,
    ) -> tuple[torch.Tensor, LSTMState]:
        """Teacher-forced prediction over padded targets, with a zero start frame prepended.

        :param targets: (B, U) int64 token ids in [0, V) (padding value irrelevant past lengths,
            but it is run through the LSTM, as in NeMo).
        :param target_lengths: (B,) int64; unused (kept for NeMo's signature).
        :param state: optional initial (h, c); zeros if None.
        :return: ``(out, (h, c))``: out (B, U+1, H) float; h/c (L, B, H) the state after all U+1
            inputs (including padding, as NeMo returns it).
        """
        del target_lengths
        embedded = self._embed(targets.long())  # (B, U, H)
        start = embedded.new_zeros(embedded.size(0), 1, embedded.size(2))
        inputs = torch.cat([start, embedded], dim=1)  # (B, U+1, H)
        if state is None and self.random_state_sampling and self.training:
            state = self.initial_state(inputs.size(0), inputs.device, inputs.dtype)
        return self.prediction["dec_rnn"](inputs, state)

    def step(self, tokens: Optional[torch.Tensor], state: Optional[LSTMState] = None) -> tuple[torch.Tensor, LSTMState]:
        """Advance the prediction network by one token per utterance (for decoding).

        :param tokens: (B,) int64 last emitted tokens; the blank id (V) gives the zero input
            vector; None means "start" (zero input for every utterance, requires ``state`` or
            assumes B = 1).
        :param state: (h, c) from ``initial_state``/a previous step; None means zeros.
        :return: ``(out, state)``: out (B, H) float, the new (h, c).
        """
        if tokens is None:
            batch = 1 if state is None else state[0].size(1)
            param = self.prediction["embed"].weight
            inputs = param.new_zeros(batch, 1, self.pred_hidden)
        else:
            inputs = self._embed(tokens.long().reshape(-1, 1))  # (B, 1, H)
        lstm = self.prediction["dec_rnn"].lstm
        if not self.training and not torch.is_grad_enabled() and type(lstm) is nn.LSTM and not lstm.proj_size:
            return self._cell_step(lstm, inputs[:, 0], state)
        out, state = self.prediction["dec_rnn"](inputs, state)
        return out[:, 0], state

    def _cell_step(self, lstm: nn.LSTM, x: torch.Tensor, state: Optional[LSTMState]) -> tuple[torch.Tensor, LSTMState]:
        """One inference step through ``lstm``'s weights with ``torch.lstm_cell``, layer by layer.

        Same result as ``lstm`` on a length-1 sequence; several times faster on CPU, where
        ``nn.LSTM`` pays a fixed oneDNN set-up per call that dominates a single step.

        :param x: (B, H) inputs. :return: out (B, H), state (h, c) each (L, B, H).
        """
        if state is None:
            state = self.initial_state(x.size(0), x.device, x.dtype)
        h, c = state
        hs, cs = [], []
        for layer in range(lstm.num_layers):
            x, c_layer = torch.lstm_cell(
                x, (h[layer], c[layer]),
                getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}"),
                getattr(lstm, f"bias_ih_l{layer}"), getattr(lstm, f"bias_hh_l{layer}"),
            )
            hs.append(x)
            cs.append(c_layer)
        return x, (torch.stack(hs), torch.stack(cs))

    @staticmethod
    def select_state(mask: torch.Tensor, new: LSTMState, old: LSTMState) -> LSTMState:
        """Per utterance, take ``new`` where ``mask`` (B,) bool is True, else ``old``; h/c (L, B, H)."""
        keep = mask.view(1, -1, 1)
        return torch.where(keep, new[0], old[0]), torch.where(keep, new[1], old[1])

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, U) int64 -> (B, U, H); blank maps to zeros."""
        embed = self.prediction["embed"]
        if self.blank_as_pad:
            return embed(tokens)
        is_blank = tokens == self.blank_idx
        vectors = embed(tokens.masked_fill(is_blank, 0))
        return vectors.masked_fill(is_blank.unsqueeze(-1), 0.0)


class _LSTMDropout(nn.Module):
    """``torch.nn.LSTM`` (batch-first) as ``.lstm`` + output dropout; NeMo's ``LSTMDropout`` init."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        proj_size: int,
        forget_gate_bias: Optional[float],
        t_max: Optional[int],
        weights_init_scale: float,
        hidden_hidden_bias_scale: float,
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_size, hidden_size, num_layers, batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0, proj_size=proj_size,
        )
        self.dropout = nn.Dropout(dropout) if dropout else None
        with torch.no_grad():
            for name, param in self.lstm.named_parameters():
                if "bias" not in name:
                    continue
                if t_max is not None:  # chrono init: forget ~ log U(1, t_max - 1), input = -forget
                    param.zero_()
                    forget = torch.log(torch.empty(hidden_size).uniform_(1, t_max - 1))
                    param[hidden_size : 2 * hidden_size] = forget
                    param[:hidden_size] = -forget
                elif forget_gate_bias is not None and "bias_ih" in name:
                    param[hidden_size : 2 * hidden_size] = forget_gate_bias
                elif forget_gate_bias is not None and "bias_hh" in name:
                    param[hidden_size : 2 * hidden_size] *= float(hidden_hidden_bias_scale)
            for param in self.lstm.parameters():
                param.mul_(float(weights_init_scale))

    def forward(self, x: torch.Tensor, state: Optional[LSTMState] = None) -> tuple[torch.Tensor, LSTMState]:
        """:param x: (B, U, H_in). :return: (B, U, H) and the final (h, c)."""
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN has no bf16/fp16 LSTM on CPUs without native bf16 (it fails to build the
            # primitive), and the LSTM is a small part of the step: run it in float32.
            with torch.autocast("cpu", enabled=False):
                state = None if state is None else tuple(s.float() for s in state)
                out, state = self.lstm(x.float(), state)
        else:
            out, state = self.lstm(x, state)
        if self.dropout is not None:
            out = self.dropout(out)
        return out, state
