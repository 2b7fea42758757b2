"""NIST SPHERE audio (``.sph``): the format of LDC's corpora (Fisher, Switchboard, HUB5, TED-LIUM,
AN4, WSJ, TIMIT), read in Python.

A SPHERE file is an ASCII header (``NIST_1A``, its size in bytes, ``name -type value`` fields up to
``end_head``, padded to the size, usually 1024) followed by the samples::

    NIST_1A
       1024
    sample_count -i 4800000
    sample_rate -i 8000
    channel_count -i 2
    sample_n_bytes -i 1
    sample_coding -s26 ulaw,embedded-shorten-v2.00
    end_head

Uncompressed data is decoded here with numpy: linear PCM of 1, 2 or 4 bytes in either byte order
(``sample_byte_format`` ``01`` little-endian, ``10`` big-endian; 1-byte PCM is signed), mu-law and
A-law (ITU-T G.711), any number of interleaved channels. Shorten-compressed data
(``...,embedded-shorten-v2.00``: LDC's Fisher, Switchboard, HUB5 and many others) is decoded by the
``desphere`` package (``pip install 'myna[sphere]'``, pure Python, MIT): without it such a file
is an error naming the file and the package to install.

>>> samples, rate = read_sphere("fe_03_00001.sph")
>>> samples.shape, samples.dtype, rate
((4800000, 2), dtype('int16'), 8000)
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SphereError", "SphereHeader", "parse_sphere_header", "read_sphere", "is_sphere"]

MAGIC = b"NIST_1A"
SHORTEN = "embedded-shorten-v2.00"


class SphereError(ValueError):
    """A SPHERE file is malformed, truncated, or uses a coding that cannot be decoded here."""


@dataclass(frozen=True)
class SphereHeader:
    """The fields of a SPHERE header that say how to read the samples (all fields in ``fields``)."""

    header_size: int
    sample_count: int
    sample_rate: int
    channel_count: int
    sample_n_bytes: int
    coding: str  # base coding: "pcm", "ulaw" or "alaw"
    compression: str  # "" or "embedded-shorten-v2.00"
    byte_format: str  # "01" little-endian, "10" big-endian, "1" single byte
    fields: dict = field(default_factory=dict)


def is_sphere(blob: bytes) -> bool:
    """True when ``blob`` (a file's first bytes) starts with the SPHERE magic."""
    return blob[:7] == MAGIC


def parse_sphere_header(blob: bytes, name: str = "<bytes>") -> SphereHeader:
    """Parse the header at the start of ``blob`` (at least the header's bytes).

    Raises:
        SphereError: no ``NIST_1A`` magic, a bad size line or field, or a missing required
            field; the message names ``name``.
    """
    if not is_sphere(blob):
        raise SphereError(f"{name}: not a NIST SPHERE file (no NIST_1A magic)")
    lines = blob.split(b"\n", 2)
    try:
        header_size = int(lines[1].strip())
    except (IndexError, ValueError):
        raise SphereError(f"{name}: bad SPHERE header size line") from None
    if header_size < 16 or len(blob) < header_size:
        raise SphereError(f"{name}: SPHERE header claims {header_size} bytes, file has {len(blob)}")
    fields: dict[str, object] = {}
    for raw in blob[:header_size].split(b"\n")[2:]:
        line = raw.decode("latin-1").strip()
        if line == "end_head":
            break
        if not line or line.startswith(";"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            raise SphereError(f"{name}: bad SPHERE header field {line!r}")
        key, kind, value = parts
        try:
            if kind == "-i":
                fields[key] = int(value)
            elif kind == "-r":
                fields[key] = float(value)
            elif kind.startswith("-s"):
                length = int(kind[2:])  # -sN: a string of N characters (may hold spaces)
                fields[key] = line.split(None, 2)[2][:length]
            else:
                raise ValueError(kind)
        except ValueError:
            raise SphereError(f"{name}: bad SPHERE header field {line!r}") from None
    else:
        raise SphereError(f"{name}: SPHERE header has no end_head")
    for key in ("sample_count", "sample_rate", "channel_count", "sample_n_bytes"):
        if not isinstance(fields.get(key), (int, float)):
            raise SphereError(f"{name}: SPHERE header lacks {key}")
    coding = str(fields.get("sample_coding", "pcm")).strip().lower()
    base, _, compression = (t.strip() for t in coding.partition(","))
    base = {"mu-law": "ulaw", "mulaw": "ulaw", "a-law": "alaw"}.get(base, base)
    n_bytes = int(fields["sample_n_bytes"])
    default_format = "1" if n_bytes == 1 else ""
    return SphereHeader(
        header_size=header_size,
        sample_count=int(fields["sample_count"]),
        sample_rate=int(fields["sample_rate"]),
        channel_count=int(fields["channel_count"]),
        sample_n_bytes=n_bytes,
        coding=base,
        compression=compression,
        byte_format=str(fields.get("sample_byte_format", default_format)).strip(),
        fields=fields,
    )


def read_sphere(source: str | os.PathLike | bytes) -> tuple[np.ndarray, int]:
    """Decode a SPHERE file (path or its bytes) to samples.

    Returns:
        (samples, sample_rate): ``samples`` is (frames, channels) int16 for 1- and 2-byte PCM and
        for mu-law/A-law (expanded to 16-bit linear, as sph2pipe ``-p`` does), int32 for 4-byte
        PCM.

    Raises:
        SphereError: a malformed or truncated file, a coding not handled here, or a shorten file
            without the ``desphere`` package; the message names the file.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        blob, name = bytes(source), "<bytes>"
    else:
        name = str(source)
        try:
            blob = Path(source).read_bytes()
        except OSError as err:
            raise SphereError(f"cannot read {name}: {err.strerror or err}") from None
    header = parse_sphere_header(blob, name)
    if header.compression:
        if header.compression != SHORTEN:
            raise SphereError(f"{name}: unsupported SPHERE compression {header.compression!r} "
                              f"(only {SHORTEN} is known)")
        samples = _decode_shorten(blob, header, name)
    else:
        samples = _decode_plain(memoryview(blob)[header.header_size:], header, name)
    return samples, header.sample_rate


def _decode_plain(data: memoryview, header: SphereHeader, name: str) -> np.ndarray:
    channels, n_bytes = header.channel_count, header.sample_n_bytes
    expected = header.sample_count * channels * n_bytes
    if len(data) < expected:
        raise SphereError(f"{name}: truncated: header says {header.sample_count} samples x "
                          f"{channels} channels x {n_bytes} bytes, file has {len(data)} data bytes")
    raw = np.frombuffer(data[:expected], dtype=np.uint8)
    if header.coding in ("ulaw", "alaw"):
        if n_bytes != 1:
            raise SphereError(f"{name}: {header.coding} with sample_n_bytes={n_bytes} (expected 1)")
        table = _ULAW if header.coding == "ulaw" else _ALAW
        return table[raw].reshape(-1, channels)
    if header.coding != "pcm":
        raise SphereError(f"{name}: unsupported SPHERE sample_coding {header.coding!r}")
    if n_bytes == 1:
        return raw.view(np.int8).astype(np.int16).reshape(-1, channels) << 8
    if n_bytes not in (2, 4):
        raise SphereError(f"{name}: unsupported sample_n_bytes={n_bytes} for pcm")
    order = {"01": "<", "10": ">"}.get(header.byte_format)
    if order is None:
        raise SphereError(f"{name}: unknown sample_byte_format {header.byte_format!r} for "
                          f"{8 * n_bytes}-bit pcm (expected 01 or 10)")
    dtype = np.dtype(f"{order}i{n_bytes}")
    return raw.view(dtype).astype(f"=i{n_bytes}").reshape(-1, channels)


def _decode_shorten(blob: bytes, header: SphereHeader, name: str) -> np.ndarray:
    try:
        import desphere
    except ImportError:
        raise SphereError(f"{name}: shorten-compressed SPHERE ({header.coding},{SHORTEN}) needs the "
                          f"desphere package: pip install 'myna[sphere]'") from None
    import soundfile as sf

    try:
        wav = desphere.transcode_bytes(blob)
    except desphere.DesphereError as err:
        raise SphereError(f"{name}: cannot decode shorten data: {err}") from None
    samples, _ = sf.read(io.BytesIO(wav), dtype="int16", always_2d=True)
    if samples.shape != (header.sample_count, header.channel_count):
        raise SphereError(f"{name}: shorten data decoded to {samples.shape[0]} x {samples.shape[1]} "
                          f"samples, header says {header.sample_count} x {header.channel_count}")
    return samples


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    """ITU-T G.711 expansion tables: byte -> 16-bit linear (mu-law, A-law)."""
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    exponent, mantissa = (u >> 4) & 7, u & 15
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    ulaw = np.where(u & 0x80, -magnitude, magnitude)
    a = codes ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 15
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    alaw = np.where(a & 0x80, magnitude, -magnitude)
    return ulaw.astype(np.int16), alaw.astype(np.int16)


_ULAW, _ALAW = _g711_tables()
