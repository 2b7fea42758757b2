"""A small shorten (v2) encoder and SPHERE writers, to make test files whose samples are known.

Shorten (T. Robinson, CUED/F-INFENG/TR.156, 1994) as LDC embeds it in SPHERE files: a bit stream
(MSB first) starting ``ajkg`` + version byte 2, then Rice-coded values. ``uvar(k)``: the high
part in unary (that many 0 bits, then a 1), then the low ``k`` bits; ``ulong``: ``uvar(2)`` gives a
width ``w``, then ``uvar(w)``; ``svar(k)``: ``uvar(k+1)`` of the zig-zag map (``2v`` for ``v >= 0``,
``-2v-1`` otherwise). Header: type, channels, block size, max LPC order, number of block means
(``nmean``), skipped bytes, each a ``ulong``. Then commands (``uvar(2)``), one per channel per block:

- ``DIFF0..3`` (0-3): residual size ``uvar(3)``, then ``svar`` residuals of fixed polynomial
  predictors (0: the running mean; 1: x[-1]; 2: 2x[-1]-x[-2]; 3: 3x[-1]-3x[-2]+x[-3]);
- ``QLPC`` (7): residual size ``uvar(3)``, order ``uvar(2)``, coefficients ``svar(5)``, residuals;
  prediction ``(2^5 + sum c_j (x[-j] - mean)) >> 5``, plus the mean;
- ``ZERO`` (8): a block of zeros; ``BLOCKSIZE`` (5): ``ulong`` new block size; ``QUIT`` (4).

The running mean of a channel is ``(nmean/2 + sum of the last nmean block means) / nmean``; a
block's mean is ``(blocksize/2 + sum of its samples) / blocksize`` (C division, toward zero); history
(the samples before a block) carries over between blocks of a channel and starts at zero.

This encoder uses every command above except VERBATIM and BITSHIFT, so a decoder that passes its
round trip handles the paths LDC's pcm files exercise.
"""

from __future__ import annotations

import numpy as np

DIFF0, DIFF1, DIFF2, DIFF3, QUIT, BLOCKSIZE, BITSHIFT, QLPC, ZERO = range(9)
TYPE_S16HL, TYPE_S16LH = 3, 5
LPCQUANT = 5


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def put(self, value: int, width: int) -> None:
        if width:
            self.bits.append(format(value, f"0{width}b"))

    def uvar(self, value: int, k: int) -> None:
        assert value >= 0
        self.bits.append("0" * (value >> k) + "1")
        self.put(value & ((1 << k) - 1), k)

    def ulong(self, value: int) -> None:
        width = max(value.bit_length(), 1)
        self.uvar(width, 2)
        self.uvar(value, width)

    def svar(self, value: int, k: int) -> None:
        self.uvar(2 * value if value >= 0 else -2 * value - 1, k + 1)

    def bytes(self) -> bytes:
        text = "".join(self.bits)
        text += "0" * (-len(text) % 8)
        return int(text, 2).to_bytes(len(text) // 8, "big") if text else b""


def _cdiv(a: int, b: int) -> int:
    """C's integer division (truncates toward zero), as shorten computes means."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _rice_width(residuals: list[int]) -> int:
    """A residual size giving short codes (mean magnitude's bit length)."""
    mean = sum(abs(r) for r in residuals) / max(len(residuals), 1)
    return max(int(mean).bit_length(), 0)


def shorten_encode(samples: np.ndarray, blocksize: int = 64, nmean: int = 4,
                   big_endian: bool = False) -> bytes:
    """Encode (frames, channels) int16 samples; commands cycle through all predictors."""
    frames, channels = samples.shape
    maxnlpc = 2
    out = BitWriter()
    out.ulong(TYPE_S16HL if big_endian else TYPE_S16LH)
    out.ulong(channels)
    out.ulong(blocksize)
    out.ulong(maxnlpc)
    out.ulong(nmean)
    out.ulong(0)
    history = [[0, 0, 0] for _ in range(channels)]
    means = [[0] * nmean for _ in range(channels)]
    qlpc = [40, -9]  # order-2 coefficients, quantised by 2^LPCQUANT
    block_index, start, size = 0, 0, blocksize
    while start < frames:
        if frames - start < size:
            size = frames - start
            out.uvar(BLOCKSIZE, 2)
            out.ulong(size)
        for ch in range(channels):
            x = [int(v) for v in samples[start:start + size, ch]]
            coffset = _cdiv(nmean // 2 + sum(means[ch]), nmean) if nmean else 0
            command = (DIFF0, DIFF1, DIFF2, DIFF3, QLPC)[(block_index + ch) % 5]
            if all(v == 0 for v in x):
                command = ZERO
            full = history[ch] + x  # three samples of history, then the block
            if command == QLPC:
                shifted = [v - coffset for v in full]
                residuals = []
                for i in range(3, len(full)):
                    prediction = ((1 << LPCQUANT) + qlpc[0] * shifted[i - 1]
                                  + qlpc[1] * shifted[i - 2]) >> LPCQUANT
                    residuals.append(shifted[i] - prediction)
            elif command in (DIFF0, DIFF1, DIFF2, DIFF3):
                residuals = []
                for i in range(3, len(full)):
                    if command == DIFF0:
                        prediction = coffset
                    elif command == DIFF1:
                        prediction = full[i - 1]
                    elif command == DIFF2:
                        prediction = 2 * full[i - 1] - full[i - 2]
                    else:
                        prediction = 3 * full[i - 1] - 3 * full[i - 2] + full[i - 3]
                    residuals.append(full[i] - prediction)
            out.uvar(command, 2)
            if command == ZERO:
                pass
            elif command == QLPC:
                k = _rice_width(residuals)
                out.uvar(k, 3)
                out.uvar(len(qlpc), 2)
                for c in qlpc:
                    out.svar(c, LPCQUANT)
                for r in residuals:
                    out.svar(r, k)
            else:
                k = _rice_width(residuals)
                out.uvar(k, 3)
                for r in residuals:
                    out.svar(r, k)
            if nmean:
                means[ch] = means[ch][1:] + [_cdiv(size // 2 + sum(x), size)]
            history[ch] = full[-3:]
        start += size
        block_index += 1
    out.uvar(QUIT, 2)
    return b"ajkg\x02" + out.bytes()


def sphere_header(fields: dict[str, int | str], size: int = 1024) -> bytes:
    """A SPHERE header with the given fields (ints as -i, strings as -sN), padded to ``size``."""
    lines = ["NIST_1A", f"{size:7d}"]
    for key, value in fields.items():
        if isinstance(value, int):
            lines.append(f"{key} -i {value}")
        else:
            lines.append(f"{key} -s{len(value)} {value}")
    lines.append("end_head")
    text = "\n".join(lines) + "\n"
    assert len(text) <= size
    return text.encode("ascii") + b" " * (size - len(text))


def sphere_pcm(samples: np.ndarray, rate: int, big_endian: bool = False,
               shorten: bool = False) -> bytes:
    """A SPHERE file of (frames, channels) int16 samples: plain PCM or shorten-compressed."""
    frames, channels = samples.shape
    fields = {
        "database_id": "myna-test",
        "sample_count": frames,
        "sample_rate": rate,
        "channel_count": channels,
        "sample_n_bytes": 2,
        "sample_byte_format": "10" if big_endian else "01",
        "sample_coding": "pcm,embedded-shorten-v2.00" if shorten else "pcm",
        "sample_sig_bits": 16,
    }
    if shorten:
        body = shorten_encode(samples, big_endian=big_endian)
    else:
        body = samples.astype(">i2" if big_endian else "<i2").tobytes()
    return sphere_header(fields) + body


def sphere_ulaw(codes: np.ndarray, rate: int) -> bytes:
    """A SPHERE file of (frames, channels) mu-law bytes."""
    frames, channels = codes.shape
    fields = {"sample_count": frames, "sample_rate": rate, "channel_count": channels,
              "sample_n_bytes": 1, "sample_coding": "ulaw"}
    return sphere_header(fields) + codes.astype(np.uint8).tobytes()


def speech_like(frames: int, channels: int, rate: int = 8000, seed: int = 0) -> np.ndarray:
    """(frames, channels) int16: tones plus noise, with a silent stretch (for ZERO blocks)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / rate
    out = np.empty((frames, channels), dtype=np.int16)
    for ch in range(channels):
        wave = 3000 * np.sin(2 * np.pi * (220 + 110 * ch) * t) + rng.normal(0, 300, frames)
        wave[frames // 3: frames // 3 + 200] = 0
        out[:, ch] = np.clip(np.round(wave), -32768, 32767).astype(np.int16)
    return out
