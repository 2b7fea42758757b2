"""Activation functions by name, as NeMo's configs spell them (``swish``, ``relu``, ...).

>>> build_activation("swish")
SiLU()
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "swish": nn.SiLU,  # NeMo's Swish is x * sigmoid(x), i.e. SiLU
    "silu": nn.SiLU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def build_activation(name: str) -> nn.Module:
    """A new activation module for ``name`` (case-insensitive).

    :param name: one of ``relu``, ``swish``, ``silu``, ``selu``, ``gelu``, ``tanh``, ``sigmoid``,
        ``identity``.
    :raises ValueError: naming the unknown activation and the known ones.
    """
    key = str(name).lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[key]()


def activation_names() -> list[str]:
    """The names :func:`build_activation` accepts."""
    return sorted(_ACTIVATIONS)
