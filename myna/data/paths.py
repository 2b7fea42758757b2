"""The one parser of NeMo's path arguments: manifests, weighted manifests, buckets and tar shards.

NeMo writes the same key in several shapes, and myna reads each shape here:

- a path, or several joined by commas: ``"a.json"``, ``"a.json,b.json"`` (:func:`manifest_paths`);
- a list of those: ``["a.json", "b.json"]`` (:func:`manifest_paths`);
- weighted sources (Lhotse): ``[[a.json, 0.7], [b.json, 0.3]]``, also as one YAML string
  (:func:`weighted_manifest_paths`);
- static buckets: ``[[b1.json], [b2a.json, b2b.json]]`` (:func:`bucketed_manifest_paths`);
- tar shards and sharded manifests, brace-expanded: ``audio_{0..63}.tar``, also NeMo's
  ``_OP_``/``_CL_``, ``(``, ``[`` and ``<`` spellings of the braces (:func:`expand_sharded_filepaths`).

Paths stay strings (never :class:`pathlib.Path`, which would fold the ``//`` of a URL); the
readers decide how to open them. A malformed value is a ``ValueError`` naming the config key.

>>> manifest_paths("train_a.json,train_b.json")
['train_a.json', 'train_b.json']
>>> weighted_manifest_paths("[[a.json, 3], [b.json, 1]]")
[('a.json', 3.0), ('b.json', 1.0)]
>>> expand_sharded_filepaths("audio__OP_0..2_CL_.tar")
['audio_0.tar', 'audio_1.tar', 'audio_2.tar']
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from typing import Any, Sequence

import yaml

__all__ = [
    "manifest_paths",
    "weighted_manifest_paths",
    "bucketed_manifest_paths",
    "is_nested",
    "brace_expand",
    "expand_sharded_filepaths",
    "SHARD_STRATEGIES",
]

logger = logging.getLogger("myna.data")

SHARD_STRATEGIES = ("scatter", "replicate")

# NeMo's alternative brace spellings (for shells and config systems that mangle '{' and '}').
_OPEN_KEYS = ("(", "[", "<", "_OP_")
_CLOSE_KEYS = (")", "]", ">", "_CL_")


def manifest_paths(value: Any, key: str = "manifest_filepath") -> list[str]:
    """Paths of a flat path argument: one path, a comma-separated string, or a list of those.

    Raises:
        ValueError: no path at all, or a nested list (buckets and weights have their own
            readers), naming ``key``.
    """
    paths = []
    for item in _items(value, key):
        if not isinstance(item, str):
            raise ValueError(f"{key}: list items must be paths, got {type(item).__name__}: {item!r} "
                             f"(lists of lists, i.e. bucketed or weighted manifests, are not supported here)")
        paths.extend(_split_commas(item))
    if not paths:
        raise ValueError(f"{key}: no path given: {value!r}")
    return paths


def weighted_manifest_paths(value: Any, key: str = "manifest_filepath") -> list[tuple[str, float]]:
    """``a.json`` / ``a.json,b.json`` / ``[a.json, b.json]`` / ``[[a.json, 0.7], [b.json, 0.3]]``
    (also as one YAML string) -> [(path, weight)], weight 1 where none is given."""
    out = []
    for item in _items(value, key):
        if isinstance(item, str):
            out.extend((path, 1.0) for path in _split_commas(item))
        elif len(item) == 2 and isinstance(item[0], str) and _is_number(item[1]):
            if item[1] < 0:
                raise ValueError(f"{key}: weight of {item[0]} must be >= 0, got {item[1]}")
            out.append((item[0], float(item[1])))
        else:
            raise ValueError(f"{key}: expected a path or [path, weight], got {item!r}")
    if not out:
        raise ValueError(f"{key}: no manifest in {value!r}")
    return out


def bucketed_manifest_paths(value: Any, key: str = "manifest_filepath") -> list[list[str]]:
    """NeMo's static buckets ``[[b1.json], [b2a.json, b2b.json], ...]`` -> one path list per bucket
    (a bucket may also be a plain string)."""
    buckets = [manifest_paths(item, f"{key} bucket {b + 1}") for b, item in enumerate(_items(value, key))]
    if not buckets:
        raise ValueError(f"{key}: no bucket given: {value!r}")
    return buckets


def is_nested(value: Any) -> bool:
    """Whether a path argument is a list holding lists (buckets or weights)."""
    items = _items(value, "") if value is not None else []
    return any(not isinstance(item, str) for item in items)


def _items(value: Any, key: str) -> list[Any]:
    """The top-level items of a path argument as plain Python: strings and lists."""
    value = _plain(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):  # a list typed as one string (command line)
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise ValueError(f"{key}: {value!r} is not a valid YAML list ({err})") from None
        else:
            return [text]
    if isinstance(value, os.PathLike):
        return [os.fspath(value)]
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray)):
        raise ValueError(f"{key}: expected a path or a list of paths, got {type(value).__name__}: {value!r}")
    return [_plain_item(item, key) for item in value]


def _plain_item(item: Any, key: str) -> Any:
    item = _plain(item)
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    if isinstance(item, Sequence) and not isinstance(item, (bytes, bytearray)):
        return [os.fspath(x) if isinstance(x, os.PathLike) else _plain(x) for x in item]
    raise ValueError(f"{key}: expected a path or a list, got {type(item).__name__}: {item!r}")


def _plain(value: Any) -> Any:
    """OmegaConf containers as Python lists (other values unchanged)."""
    if type(value).__name__ in ("ListConfig", "DictConfig"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


def _split_commas(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ----------------------------------------------------------------------------- shards


def expand_sharded_filepaths(
    sharded_filepaths: Any,
    shard_strategy: str = "scatter",
    world_size: int = 1,
    global_rank: int = 0,
) -> list[str]:
    """NeMo's shard list: expand the braces, then keep this rank's share.

    Args:
        sharded_filepaths: a list of paths, or one string with brace groups, where ``(``, ``[``,
            ``<`` and ``_OP_`` stand for ``{`` and ``)``, ``]``, ``>`` and ``_CL_`` for ``}``.
        shard_strategy: ``scatter``: rank r keeps the r-th contiguous block of
            ``len // world_size`` shards (the remainder is not read; a warning says so);
            ``replicate``: every rank keeps all shards.
        world_size, global_rank: DDP layout.

    Returns:
        this rank's shard paths.

    Raises:
        ValueError: unknown strategy, no shards, or fewer shards than ranks with ``scatter``.
    """
    if shard_strategy not in SHARD_STRATEGIES:
        raise ValueError(f"tarred_shard_strategy must be one of {SHARD_STRATEGIES}, got {shard_strategy!r}")
    value = _plain(sharded_filepaths)
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        for open_key in _OPEN_KEYS:
            text = text.replace(open_key, "{")
        for close_key in _CLOSE_KEYS:
            text = text.replace(close_key, "}")
        paths = brace_expand(text)
    else:
        paths = [p for item in value for p in brace_expand(os.fspath(item))]
    if not paths:
        raise ValueError(f"no shard path in {sharded_filepaths!r}")
    if world_size > 1 and shard_strategy == "scatter":
        if len(paths) < world_size:
            raise ValueError(f"{len(paths)} shards cannot be scattered over {world_size} ranks "
                             f"(use tarred_shard_strategy=replicate or more shards): {sharded_filepaths!r}")
        if len(paths) % world_size != 0:
            message = (f"number of shards in tarred dataset ({len(paths)}) is not divisible by the "
                       f"number of distributed workers ({world_size}); the last "
                       f"{len(paths) % world_size} shard(s) are not read")
            logger.warning(message)
            warnings.warn(message, stacklevel=2)
        per_rank = len(paths) // world_size
        paths = paths[per_rank * global_rank : per_rank * (global_rank + 1)]
    return paths


def brace_expand(pattern: str) -> list[str]:
    """Bash-style brace expansion: ``a_{0..2}.tar`` -> ``a_0.tar, a_1.tar, a_2.tar``.

    Handles comma lists (``{a,b}``), numeric ranges with an optional step and zero padding
    (``{00..10..2}``), several and nested groups. A brace group without a comma or range stays
    literal.
    """
    start = _find_group(pattern)
    if start is None:
        return [pattern]
    open_at, close_at = start
    head, body, tail = pattern[:open_at], pattern[open_at + 1 : close_at], pattern[close_at + 1 :]
    tails = brace_expand(tail)
    alternatives = _range_alternatives(body)
    if alternatives is None:
        parts = _split_top_level(body)
        if len(parts) == 1:  # literal braces (their content may still hold groups)
            return [head + "{" + b + "}" + t for b in brace_expand(body) for t in tails]
        alternatives = [x for part in parts for x in brace_expand(part)]
    return [head + alt + t for alt in alternatives for t in tails]


def _find_group(text: str) -> tuple[int, int] | None:
    depth, open_at = 0, -1
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                open_at = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                return open_at, i
    return None


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in body:
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current.append(ch)
    parts.append("".join(current))
    return parts


def _range_alternatives(body: str) -> list[str] | None:
    match = re.fullmatch(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?", body)
    if not match:
        return None
    first, last = match.group(1), match.group(2)
    step = abs(int(match.group(3) or 1)) or 1
    a, b = int(first), int(last)
    padded = any(len(x.lstrip("-")) > 1 and x.lstrip("-").startswith("0") for x in (first, last))
    width = max(len(first), len(last)) if padded else 0
    values = range(a, b + 1, step) if a <= b else range(a, b - 1, -step)
    return [str(v).zfill(width) if width else str(v) for v in values]
