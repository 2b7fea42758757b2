"""Reading ``torch.save`` files that came from elsewhere: weights, checkpoints, ``.nemo`` members.

Every such file is read with ``weights_only=True`` (tensors, plain containers and numbers; no
code). What cannot be read that way fails with one line naming the file and what is wrong:

- content that would run code or build arbitrary objects: ``refused: not a plain tensor file``
  (torch's own message, which explains how to allow the object, is not passed on);
- a truncated or corrupt file, random bytes, an empty file: ``not a readable tensor file``.

>>> state = load_tensor_file("model_weights.ckpt")              # a dict
>>> check_tensor_file("exp/checkpoints/last.ckpt")               # structure only (mmap), before resuming
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from typing import Any, Union

import torch

__all__ = ["TensorFileError", "load_tensor_file", "check_tensor_file"]

Source = Union[str, os.PathLike, bytes]


class TensorFileError(ValueError):
    """A tensor file is unsafe, truncated, corrupt or not a tensor file at all."""


_READ_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, IndexError, KeyError, TypeError, AttributeError,
                ValueError, OSError, zipfile.BadZipFile, UnicodeDecodeError, ImportError, MemoryError)


def load_tensor_file(source: Source, name: str | None = None, mmap: bool = False) -> Any:
    """``torch.load(source, weights_only=True)`` on CPU, with one-line errors.

    Args:
        source: a path, or the file's bytes (an archive member).
        name: what messages call it (default: the path).
        mmap: map the file instead of reading the tensors' data (paths only).

    Raises:
        TensorFileError: naming the file: ``refused: not a plain tensor file`` for pickled code or
            objects, ``not a readable tensor file`` for anything else that fails to load.
    """
    if name is None:
        name = "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)
    if not isinstance(source, (bytes, bytearray)):
        if not os.path.isfile(source):
            raise TensorFileError(f"{name}: no such file")
        if os.path.getsize(source) == 0:
            raise TensorFileError(f"{name}: not a readable tensor file (empty)")
    elif not source:
        raise TensorFileError(f"{name}: not a readable tensor file (empty)")
    target = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        return torch.load(target, map_location="cpu", weights_only=True,
                          **({"mmap": True} if mmap and not isinstance(target, io.BytesIO) else {}))
    except _READ_ERRORS as err:
        # Pickled references to functions or classes ("Unsupported global") are what runs code;
        # other failures of the restricted unpickler are damaged or foreign bytes.
        if isinstance(err, pickle.UnpicklingError) and "global" in str(err).lower():
            raise TensorFileError(f"{name}: refused: not a plain tensor file") from None
        text = str(err)
        if "WeightsUnpickler error:" in text:  # the reason follows; torch's advice around it is not passed on
            detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].strip()
        else:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            detail = lines[0] if lines and "weights_only" not in lines[0] else type(err).__name__
        raise TensorFileError(f"{name}: not a readable tensor file (truncated or corrupt: {detail[:160]})") from None


def check_tensor_file(path: str | os.PathLike) -> None:
    """Check that a checkpoint loads safely (structure and pickle only: the tensors' data are
    mapped, not read), so that a bad ``last.ckpt`` is named before training resumes from it.

    Raises:
        TensorFileError: as :func:`load_tensor_file`.
    """
    load_tensor_file(path, mmap=True)
