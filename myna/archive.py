"""The one safety rule for every tar archive myna reads: ``.nemo`` files, tar shards, corpus downloads.

Archives are read member by member and never extracted by the names they carry. A member is
accepted only when it is a regular file (or, for :func:`myna.data.prepare.download.extract`, a
folder) whose name, normalised, stays inside the target: links (symbolic or hard), devices,
FIFOs, absolute names, Windows drive or backslash names and ``..`` components are refused with
an :class:`UnsafeArchiveError` naming the archive and the member.

>>> name = safe_member_name(member, "model.nemo")   # "./tokenizer.model" -> "tokenizer.model"
>>> path = safe_target(directory, name, "model.nemo")  # a path inside ``directory``
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath

__all__ = ["UnsafeArchiveError", "safe_member_name", "safe_target"]


class UnsafeArchiveError(ValueError):
    """An archive member is a link, a special file, or would be written outside the target.

    ``str(err)`` names the archive and the member; ``err.reason`` says what is wrong alone.
    """

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where} {reason}")
        self.reason = reason


def _check_name(name: str, where: str) -> str:
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(where, "has an absolute or empty name; refused")
    path = PurePosixPath(name)
    if ".." in path.parts or "\\" in name or "\x00" in name:
        raise UnsafeArchiveError(where, "would be written outside the target (..); refused")
    normal = str(path)
    return "" if normal == "." else normal


def safe_member_name(member: tarfile.TarInfo, archive: str | os.PathLike, allow_dirs: bool = False) -> str:
    """The member's normalised name (``./a/b`` -> ``a/b``), after checking it is safe to read.

    Args:
        member: a tar member header.
        archive: the archive's path or URL, for messages.
        allow_dirs: accept folders too (extraction creates them); otherwise only regular files.

    Raises:
        UnsafeArchiveError: naming the archive and the member, for a link, a device, FIFO or other
            special file, a folder (unless ``allow_dirs``), an absolute name or a ``..`` component.
    """
    where = f"{archive}: member {member.name!r}"
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(where, f"is a link (to {member.linkname!r}); refused")
    if not (member.isfile() or (allow_dirs and member.isdir())):
        kind = "a folder" if member.isdir() else "a device, FIFO or other special file"
        raise UnsafeArchiveError(where, f"is {kind}, not a regular file; refused")
    return _check_name(member.name, where)


def safe_target(directory: str | os.PathLike, name: str, archive: str | os.PathLike) -> Path:
    """Where member ``name`` may be written under ``directory``: the resolved path, checked to
    lie inside ``directory`` (also through links already on disk).

    Raises:
        UnsafeArchiveError: naming the archive and the member when it would land outside.
    """
    where = f"{archive}: member {name!r}"
    name = _check_name(name, where)
    root = Path(directory).resolve()
    out = (root / name).resolve()
    if not name or root not in out.parents:
        raise UnsafeArchiveError(where, f"resolves outside {directory}; refused")
    return out
