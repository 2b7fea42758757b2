"""myna.sphere: SPHERE headers, plain PCM / G.711, and shorten against our own encoder."""

import builtins
import sys
from pathlib import Path

import numpy as np
import pytest

from myna.sphere import SphereError, parse_sphere_header, read_sphere

sys.path.insert(0, str(Path(__file__).parent / "data"))
from shorten_encoder import (sphere_header, sphere_pcm, sphere_ulaw,  # noqa: E402
                             speech_like)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("big_endian", [False, True])
def test_plain_pcm_reads_back_exactly_in_both_byte_orders(tmp_path, channels, big_endian):
    x = speech_like(900, channels, seed=channels)
    path = tmp_path / "a.sph"
    path.write_bytes(sphere_pcm(x, 16000, big_endian=big_endian))
    samples, rate = read_sphere(path)
    assert rate == 16000 and samples.dtype == np.int16
    np.testing.assert_array_equal(samples, x)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("big_endian", [False, True])
def test_shorten_decodes_our_encoder_output_exactly(channels, big_endian):
    pytest.importorskip("desphere")
    x = speech_like(1500, channels, seed=10 + channels)  # 24 blocks: DIFF0-3, QLPC, ZERO, short last
    blob = sphere_pcm(x, 8000, big_endian=big_endian, shorten=True)
    assert len(blob) - 1024 < x.nbytes  # really compressed
    samples, rate = read_sphere(blob)
    assert rate == 8000
    np.testing.assert_array_equal(samples, x)


def test_ulaw_and_alaw_expand_to_g711_values():
    codes = np.array([[0xFF, 0x00], [0x7F, 0x80], [0xEF, 0x10]], dtype=np.uint8)
    samples, _ = read_sphere(sphere_ulaw(codes, 8000))
    # G.711 (Sun's g711.c values): 0xFF and 0x7F are +-0, 0x00 / 0x80 the extremes.
    assert samples.tolist() == [[0, -32124], [0, 32124], [132, -15996]]
    alaw = sphere_header({"sample_count": 2, "sample_rate": 8000, "channel_count": 1,
                          "sample_n_bytes": 1, "sample_coding": "alaw"}) + bytes([0xD5, 0x55])
    samples, _ = read_sphere(alaw)
    assert samples[:, 0].tolist() == [8, -8]


def test_ulaw_table_is_monotonic_and_antisymmetric():
    codes = np.arange(256, dtype=np.uint8)[:, None]
    values = read_sphere(sphere_ulaw(codes, 8000))[0][:, 0].astype(int)
    # codes 0x00..0x7F are negative from -32124 up to 0, 0x80..0xFF the mirror image
    assert np.all(np.diff(values[:128]) > 0) and np.all(np.diff(values[128:]) < 0)
    np.testing.assert_array_equal(values[:128], -values[128:])


def test_header_fields_and_errors_name_the_file(tmp_path):
    header = parse_sphere_header(sphere_pcm(np.zeros((3, 2), np.int16), 8000, shorten=True))
    assert (header.sample_count, header.channel_count, header.coding, header.compression) == \
        (3, 2, "pcm", "embedded-shorten-v2.00")
    truncated = tmp_path / "cut.sph"
    truncated.write_bytes(sphere_pcm(speech_like(100, 1), 8000)[:-10])
    with pytest.raises(SphereError, match=r"cut\.sph: truncated"):
        read_sphere(truncated)
    notsph = tmp_path / "x.sph"
    notsph.write_bytes(b"RIFF....")
    with pytest.raises(SphereError, match=r"x\.sph: not a NIST SPHERE"):
        read_sphere(notsph)
    odd = tmp_path / "odd.sph"
    odd.write_bytes(sphere_header({"sample_count": 1, "sample_rate": 8000, "channel_count": 1,
                                   "sample_n_bytes": 2, "sample_coding": "pcm,embedded-lzw"}))
    with pytest.raises(SphereError, match=r"odd\.sph: unsupported SPHERE compression"):
        read_sphere(odd)


def test_shorten_without_desphere_is_one_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "fe_03_00001.sph"
    path.write_bytes(sphere_pcm(np.zeros((10, 2), np.int16), 8000, shorten=True))
    real_import = builtins.__import__

    def no_desphere(name, *args, **kwargs):
        if name == "desphere":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_desphere)
    with pytest.raises(SphereError, match=r"fe_03_00001\.sph: shorten-compressed .*myna\[sphere\]"):
        read_sphere(path)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_load_audio_decodes_shorten_sphere_segments_like_the_samples(tmp_path, as_bytes):
    pytest.importorskip("desphere")
    from myna.audio import load_audio

    x = speech_like(4000, 2, seed=3)  # 0.5 s of stereo at 8 kHz
    blob = sphere_pcm(x, 8000, shorten=True)
    path = tmp_path / "fe_03_00001.sph"
    path.write_bytes(blob)
    source = blob if as_bytes else path
    audio = load_audio(source, 8000, offset=0.1, duration=0.2)
    expected = x[800:2400].astype(np.float32).mean(axis=1) / 32768.0
    np.testing.assert_allclose(audio.numpy(), expected, atol=1e-7)
    with pytest.raises(ValueError, match="fe_03_00001.sph|<bytes>"):
        load_audio(source, 8000, offset=0.4, duration=0.3)  # ends 0.2 s past the end
