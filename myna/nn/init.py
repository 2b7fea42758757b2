"""NeMo's weight initialisation of convolution and linear layers (``init_mode``)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

__all__ = ["init_weights", "INIT_MODES"]

INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "tds_uniform", "tds_normal")


def init_weights(module: nn.Module, mode: Optional[str] = "xavier_uniform") -> None:
    """NeMo's ``init_weights``: conv/linear weights by ``mode``; norms to identity, stats reset.

    ``tds_uniform`` draws U(-b, b) and ``tds_normal`` N(0, b) with b = 2 / sqrt(fan_in)
    (Time-Depth Separable conv paper). Biases keep PyTorch's default init.
    """
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        if mode is None:
            return
        weight = module.weight
        if mode == "xavier_uniform":
            nn.init.xavier_uniform_(weight)
        elif mode == "xavier_normal":
            nn.init.xavier_normal_(weight)
        elif mode == "kaiming_uniform":
            nn.init.kaiming_uniform_(weight, nonlinearity="relu")
        elif mode == "kaiming_normal":
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
        elif mode in ("tds_uniform", "tds_normal"):
            fan_in = weight.shape[1] * (weight[0][0].numel() if weight.dim() > 2 else 1)
            bound = 2.0 / math.sqrt(fan_in)
            with torch.no_grad():
                if mode == "tds_uniform":
                    weight.uniform_(-bound, bound)
                else:
                    weight.normal_(0.0, bound)
        else:
            raise ValueError(f"unknown init_mode {mode!r}")
    elif isinstance(module, nn.BatchNorm1d):
        module.reset_parameters()
