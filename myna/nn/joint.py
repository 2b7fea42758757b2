"""RNN-T joint network: NeMo's ``RNNTJoint`` (``enc``/``pred`` projections + ``joint_net``).

logits[b, t, u] = W_out · act(enc(f[b, t]) + pred(g[b, u])) + b_out, over V+1 classes (blank = V,
the last). The outputs are raw logits: unlike NeMo on CPU, no log_softmax is applied, so losses
and decoders choose their own normalisation. Projecting first and adding afterwards lets pruned
losses evaluate the joint on (B, T, s_range, J) slices only.

Parameter names equal NeMo's keys minus the leading ``joint.``: ``pred.*``, ``enc.*`` and
``joint_net.{1|2}.*`` (the output layer is index 2 when there is a dropout layer, else 1).

>>> joint = RNNTJoint(encoder_hidden=96, pred_hidden=96, joint_hidden=96, num_classes=128)
>>> joint(torch.randn(2, 10, 96), torch.randn(2, 5, 96)).shape
torch.Size([2, 10, 5, 129])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RNNTJoint"]

_JOINT_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class RNNTJoint(nn.Module):
    """Additive RNN-T joint.

    :param encoder_hidden: D, encoder output size.
    :param pred_hidden: H, prediction-network output size.
    :param joint_hidden: J, the shared hidden size after projection.
    :param num_classes: V, vocabulary size excluding blank (NeMo's ``num_classes``).
    :param activation: ``relu``, ``sigmoid`` or ``tanh`` (applied to the sum of projections).
    :param dropout: dropout after the activation; 0 omits the layer (as NeMo, shifting the output
        layer's index from 2 to 1).
    """

    def __init__(
        self,
        encoder_hidden: int,
        pred_hidden: int,
        joint_hidden: int,
        num_classes: int,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        key = str(activation).lower()
        if key not in _JOINT_ACTIVATIONS:
            raise ValueError(f"RNNTJoint: activation must be one of {sorted(_JOINT_ACTIVATIONS)}, got {activation!r}")
        self.vocab_size = int(num_classes)
        self.num_classes_with_blank = self.vocab_size + 1
        self.blank_idx = self.vocab_size
        self.encoder_hidden = int(encoder_hidden)
        self.pred_hidden = int(pred_hidden)
        self.joint_hidden = int(joint_hidden)
        self.pred = nn.Linear(self.pred_hidden, self.joint_hidden)
        self.enc = nn.Linear(self.encoder_hidden, self.joint_hidden)
        layers: list[nn.Module] = [_JOINT_ACTIVATIONS[key]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(self.joint_hidden, self.num_classes_with_blank))
        self.joint_net = nn.Sequential(*layers)

    def project_encoder(self, encoder_out: torch.Tensor) -> torch.Tensor:
        """:param encoder_out: (B, T, D) float. :return: (B, T, J)."""
        return self.enc(encoder_out)

    def project_prediction(self, pred_out: torch.Tensor) -> torch.Tensor:
        """:param pred_out: (B, U, H) float (U is U+1 in training). :return: (B, U, J)."""
        return self.pred(pred_out)

    def joint_after_projection(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Raw logits from already projected, broadcastable inputs.

        :param f: projected encoder frames, e.g. (B, T, 1, J), or (B, T, s, J) for pruned joints.
        :param g: projected prediction frames, e.g. (B, 1, U+1, J) or (B, T, s, J).
        :return: logits of shape broadcast(f, g)[:-1] + (V+1,), e.g. (B, T, U+1, V+1); no
            log_softmax.
        """
        return self.joint_net(f + g)

    def forward(self, encoder_out: torch.Tensor, pred_out: torch.Tensor) -> torch.Tensor:
        """Full joint.

        :param encoder_out: (B, T, D) float.
        :param pred_out: (B, U+1, H) float.
        :return: (B, T, U+1, V+1) raw logits (blank = V).
        """
        f = self.project_encoder(encoder_out).unsqueeze(2)  # (B, T, 1, J)
        g = self.project_prediction(pred_out).unsqueeze(1)  # (B, 1, U+1, J)
        return self.joint_after_projection(f, g)
