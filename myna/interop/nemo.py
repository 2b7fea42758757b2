"""Read and write ``.nemo`` archives.

A ``.nemo`` file is a tar (NeMo writes it uncompressed; gzip is accepted too) holding
``model_config.yaml``, ``model_weights.ckpt`` (a ``torch.save``d state dict) and artifacts such
as the tokenizer, which the config references as ``nemo:<member name>``. myna writes its own
trained models in this same layout, so one loader serves both.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

__all__ = ["NemoArchive", "read_nemo", "write_nemo", "NemoFormatError"]

CONFIG_MEMBER = "model_config.yaml"
WEIGHTS_MEMBER = "model_weights.ckpt"


class NemoFormatError(ValueError):
    """The file is not a readable .nemo archive."""


@dataclass
class NemoArchive:
    """Contents of a .nemo archive.

    ``config`` is the model config as a plain dict; ``state_dict`` the weights; ``artifacts``
    maps each member name (e.g. ``abc_tokenizer.model``) to its bytes.
    """

    config: dict
    state_dict: dict[str, torch.Tensor]
    artifacts: dict[str, bytes]

    def extract_artifacts(self, directory: str | Path) -> dict[str, Path]:
        """Write the artifacts into ``directory``; returns member name -> written path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, data in self.artifacts.items():
            path = directory / name
            path.write_bytes(data)
            written[name] = path
        return written


def _member_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def read_nemo(path: str | Path) -> NemoArchive:
    """Read a .nemo archive fully into memory (weights loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise NemoFormatError(f"{path}: no such file")
    try:
        tar = tarfile.open(path, "r:*")
    except tarfile.TarError as err:
        raise NemoFormatError(f"{path}: not a tar archive ({err})") from None
    config = weights = None
    artifacts: dict[str, bytes] = {}
    with tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            name = _member_name(member.name)
            data = tar.extractfile(member).read()
            if name == CONFIG_MEMBER:
                config = yaml.safe_load(data.decode("utf-8"))
            elif name == WEIGHTS_MEMBER:
                weights = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            else:
                artifacts[name] = data
    if config is None:
        raise NemoFormatError(f"{path}: no {CONFIG_MEMBER} inside")
    if weights is None:
        raise NemoFormatError(f"{path}: no {WEIGHTS_MEMBER} inside")
    if isinstance(weights, Mapping) and "state_dict" in weights and not any(k.startswith("encoder.") for k in weights):
        weights = weights["state_dict"]
    return NemoArchive(config=config, state_dict=dict(weights), artifacts=artifacts)


def write_nemo(path: str | Path, config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
               artifacts: Mapping[str, bytes | str | Path] = ()) -> Path:
    """Write an uncompressed .nemo tar atomically (temp file in the same folder, then rename).

    Args:
        path: destination file.
        config: model config (plain dict); artifact references in it should read ``nemo:<name>``.
        state_dict: weights, saved with ``torch.save``.
        artifacts: member name -> bytes or a file path to copy in.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp_name, "w") as tar:
            def add(name: str, data: bytes) -> None:
                info = tarfile.TarInfo("./" + name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

            add(CONFIG_MEMBER, yaml.safe_dump(dict(config), sort_keys=False).encode("utf-8"))
            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
            add(WEIGHTS_MEMBER, buffer.getvalue())
            for name, data in dict(artifacts).items():
                add(name, data if isinstance(data, bytes) else Path(data).read_bytes())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
