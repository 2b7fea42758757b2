"""myna.data.prepare: FSDD manifests, FSDD digit strings, the bundled espeak corpus."""

from pathlib import Path

import soundfile as sf

from myna.audio import audio_info
from myna.data.manifest import read_manifest
from myna.data.prepare.fsdd import make_digit_strings, prepare_fsdd, read_fsdd_split

REPO_ROOT = Path(__file__).resolve().parents[2]
WORD_ORDER = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGITS = set(WORD_ORDER)


def test_prepare_fsdd_writes_train_dev_test(fsdd_dir, tmp_path):
    paths = prepare_fsdd(fsdd_dir, tmp_path, dev_takes=5)
    train, dev, test = (read_manifest(paths[s]) for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (2400, 300, 300)
    assert {e.extra["take"] for e in dev} == {5, 6, 7, 8, 9}
    assert {e.extra["take"] for e in test} == {0, 1, 2, 3, 4}
    assert min(e.extra["take"] for e in train) == 10
    assert {e.text for e in train} == DIGITS
    first = test[0]
    assert Path(first.audio_filepath).is_absolute() and Path(first.audio_filepath).is_file()
    info = audio_info(first.audio_filepath)
    assert abs(first.duration - info.frames / info.sample_rate) < 1e-3
    digit = int(first.extra["utt_id"].split("_")[0])
    assert first.text == WORD_ORDER[digit]


def test_make_digit_strings_duration_is_parts_plus_silences(fsdd_dir, tmp_path):
    clip = read_fsdd_split(fsdd_dir, "test")[0]  # one source clip: every part is this clip
    clip_seconds = clip.duration
    for silence in [(0.1, 0.1), (0.05, 0.2)]:
        out = make_digit_strings([clip], tmp_path / str(silence[0]), n=6, min_words=1,
                                 max_words=4, seed=0, silence=silence)
        for entry in out:
            k = len(entry.text.split())
            assert 1 <= k <= 4 and entry.text == " ".join([clip.text] * k)
            audio, rate = sf.read(entry.audio_filepath)
            assert rate == 8000 and len(audio) / rate == entry.duration
            gaps = entry.duration - k * clip_seconds
            assert (k - 1) * silence[0] - 1e-3 <= gaps <= (k - 1) * silence[1] + 1e-3


def test_make_digit_strings_is_seeded_and_writes_relative_manifest(fsdd_dir, tmp_path):
    clips = read_fsdd_split(fsdd_dir, "test")[:60]
    out = make_digit_strings(clips, tmp_path / "a", n=5, min_words=2, max_words=5, seed=3)
    again = make_digit_strings(clips, tmp_path / "b", n=5, min_words=2, max_words=5, seed=3)
    assert [e.text for e in again] == [e.text for e in out]
    assert all(set(e.text.split()) <= DIGITS and 2 <= len(e.text.split()) <= 5 for e in out)
    assert '"audio/digits_00000.wav"' in (tmp_path / "a" / "manifest.json").read_text()
    back = read_manifest(tmp_path / "a" / "manifest.json")
    assert [e.audio_filepath for e in back] == [e.audio_filepath for e in out]
    assert [e.duration for e in back] == [e.duration for e in out]


def test_bundled_espeak_corpus_is_small_readable_and_relative():
    corpus = REPO_ROOT / "data" / "espeak_digits"
    total = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    assert total <= 8 * 1024 * 1024
    for split, count in (("train", 800), ("dev", 100), ("test", 100)):
        lines = (corpus / f"{split}.json").read_text().splitlines()
        assert len(lines) == count and '"audio/' in lines[0]
        entries = read_manifest(corpus / f"{split}.json")
        assert all(set(e.text.split()) <= DIGITS for e in entries)
    info = audio_info(entries[0].audio_filepath)
    assert abs(info.frames / info.sample_rate - entries[0].duration) < 1e-3
