"""myna.data.check: the pre-flight manifest check and `myna data check`."""

import json

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from myna.cli import main
from myna.data.check import check_manifests, preflight, write_fixed_manifest


def _wav(path, seconds, rate=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)
    return path


def _manifest(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def corpus(tmp_path):
    _wav(tmp_path / "audio" / "a.wav", 1.0)
    _wav(tmp_path / "audio" / "b.wav", 2.0)
    _wav(tmp_path / "audio" / "long.wav", 10.0)
    (tmp_path / "audio" / "junk.wav").write_bytes(b"not audio at all")
    rows = [
        {"audio_filepath": "audio/a.wav", "duration": 1.0, "text": "one"},             # 1 good
        {"audio_filepath": "audio/b.wav", "duration": 4.0, "text": "two"},             # 2 twice the real length
        {"audio_filepath": "audio/missing.wav", "duration": 1.0, "text": "three"},     # 3 missing
        {"audio_filepath": "audio/junk.wav", "duration": 1.0, "text": "four"},         # 4 unreadable
        {"audio_filepath": "audio/a.wav", "duration": 1.0, "text": "  "},              # 5 empty text
        {"audio_filepath": "audio/b.wav", "text": "six"},                              # 6 no duration
        {"audio_filepath": "audio/long.wav", "offset": 8.0, "duration": 1.5, "text": "seg"},  # 7 good segment
        {"audio_filepath": "audio/long.wav", "offset": 9.0, "duration": 3.0, "text": "seg"},  # 8 ends past the file
        {"audio_filepath": "audio/b.wav", "duration": 2.05, "text": "eight"},          # 9 within tolerance
    ]
    return _manifest(tmp_path / "m.json", rows)


def test_each_problem_is_counted_and_named_with_its_line(corpus):
    report = check_manifests([corpus], workers=1)
    assert report.entries == 9
    assert report.counts == {"duration mismatch": 2, "missing file": 1, "unreadable header": 1,
                             "empty text": 1, "no duration": 1}
    where = {kind: [p.where for p in problems] for kind, problems in report.examples.items()}
    assert where["duration mismatch"] == [f"{corpus}:2", f"{corpus}:8"]
    assert where["missing file"] == [f"{corpus}:3"]
    assert where["unreadable header"] == [f"{corpus}:4"]
    assert report.fixes[str(corpus)] == {2: pytest.approx(2.0), 6: pytest.approx(2.0), 8: pytest.approx(1.0)}
    summary = report.summary()
    assert "2 duration mismatch" in summary and f"{corpus}:2: duration mismatch" in summary
    assert "manifest 4.000 s, audio 2.000 s" in summary


def test_parallel_check_finds_the_same_as_one_process(corpus, monkeypatch):
    import myna.data.check as check

    monkeypatch.setattr(check, "_CHUNK_LINES", 2)  # several chunks over two processes
    one = check_manifests([corpus], workers=1)
    two = check_manifests([corpus], workers=2)
    assert (two.counts, two.examples, two.fixes, two.entries) == (one.counts, one.examples, one.fixes, one.entries)
    assert two.seconds == pytest.approx(one.seconds)


def test_fixed_manifest_has_audio_durations_and_paths_valid_from_its_folder(corpus, tmp_path):
    report = check_manifests([corpus], workers=1)
    out = write_fixed_manifest(corpus, report.fixes[str(corpus)], tmp_path / "fixed" / "m2.json", drop={3, 4})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7
    assert rows[1]["duration"] == pytest.approx(2.0) and rows[3]["duration"] == pytest.approx(2.0)
    assert rows[0]["audio_filepath"] == "../audio/a.wav"
    again = check_manifests([out], workers=1)
    assert again.counts == {"empty text": 1}


def test_cli_check_and_fix(corpus, tmp_path, capsys):
    assert main(["data", "check", str(corpus), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "1 missing file" in out and f"{corpus}:3" in out
    fixed = tmp_path / "m2.json"
    assert main(["data", "check", str(corpus), "--workers", "1", "--fix-durations", "--drop-bad",
                 "--out", str(fixed)]) == 0
    assert "3 duration(s) set from the audio, 2 bad entries left out" in capsys.readouterr().out
    assert main(["data", "check", str(fixed)]) == 0


def test_preflight_stops_training_before_the_first_step(corpus):
    model = OmegaConf.create({"train_ds": {"manifest_filepath": str(corpus), "text_field": "text"},
                              "validation_ds": {"manifest_filepath": None}})
    data_check = OmegaConf.create({"enabled": True, "duration_tolerance": 0.1, "workers": 1, "action": "error"})
    with pytest.raises(ValueError, match=r"data check train_ds: .*1 missing file") as err:
        preflight(model, data_check)
    assert "--fix-durations" in str(err.value)
    data_check.action = "warn"
    assert preflight(model, data_check)[0].counts["missing file"] == 1
    data_check.enabled = False
    assert preflight(model, data_check) == []


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".wav", "FLOAT"), (".wav", "PCM_24"),
                                            (".flac", "PCM_16"), (".ogg", "VORBIS")])
def test_header_reader_gives_soundfile_durations(tmp_path, suffix, subtype):
    from myna.data.check import _fast_header_duration, _header_duration

    path = tmp_path / f"x{suffix}"
    sf.write(path, np.zeros((12345, 2), dtype=np.float32), 16000, subtype=subtype)
    assert _header_duration(str(path)) == pytest.approx(sf.info(str(path)).duration, abs=1e-9)
    assert (_fast_header_duration(str(path)) is None) == (suffix == ".ogg")  # others: read from the first bytes
