"""myna.data.manifest: reading, path resolution, errors naming file and line, filters."""

import json
import logging

import pytest

from myna.data.manifest import (
    ManifestEntry,
    ManifestError,
    check_audio_files,
    count_manifest_lines,
    filter_entries,
    iter_manifest,
    read_manifest,
    write_manifest,
)


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _item(**kw):
    base = {"audio_filepath": "a.wav", "duration": 1.0, "text": "one"}
    base.update(kw)
    return json.dumps(base)


def test_read_manifest_resolves_relative_paths_against_manifest_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    manifest = _write_lines(tmp_path / "sub" / "m.json", [
        _item(audio_filepath="audio/x.wav", offset=0.5, speaker="s1"),
        "",
        _item(audio_filepath="/abs/y.wav", text="two", offset=None),
    ])
    entries = read_manifest(manifest)
    assert [e.audio_filepath for e in entries] == [str(tmp_path / "sub" / "audio" / "x.wav"),
                                                   "/abs/y.wav"]
    assert entries[0].offset == 0.5 and entries[0].extra == {"speaker": "s1"}
    assert entries[1].line == 3 and entries[1].text == "two" and entries[1].offset == 0.0


def test_relative_path_falls_back_to_the_working_folder_as_nemo_does(tmp_path, monkeypatch):
    (tmp_path / "corpus" / "audio").mkdir(parents=True)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "corpus" / "audio" / "x.wav").write_bytes(b"")
    (tmp_path / "manifests" / "audio").mkdir()
    (tmp_path / "manifests" / "audio" / "both.wav").write_bytes(b"")
    (tmp_path / "corpus" / "audio" / "both.wav").write_bytes(b"")
    manifest = _write_lines(tmp_path / "manifests" / "m.json", [
        _item(audio_filepath="corpus/audio/x.wav"),     # only below the working folder
        _item(audio_filepath="audio/both.wav"),         # beside the manifest wins
        _item(audio_filepath="corpus/audio/none.wav"),  # nowhere: beside the manifest, as before
    ])
    monkeypatch.chdir(tmp_path)
    paths = [e.audio_filepath for e in read_manifest(manifest)]
    assert paths == [str(tmp_path / "corpus" / "audio" / "x.wav"),
                     str(tmp_path / "manifests" / "audio" / "both.wav"),
                     str(tmp_path / "manifests" / "corpus" / "audio" / "none.wav")]


def test_read_manifest_accepts_comma_separated_and_list(tmp_path):
    a = _write_lines(tmp_path / "a.json", [_item(text="one")])
    b = _write_lines(tmp_path / "b.json", [_item(text="two"), _item(text="three")])
    assert [e.text for e in read_manifest(f"{a},{b}")] == ["one", "two", "three"]
    assert [e.text for e in read_manifest([b, a])] == ["two", "three", "one"]


def test_broken_json_line_error_names_file_and_line(tmp_path):
    manifest = _write_lines(tmp_path / "broken.json", [_item(), _item(), '{"audio_filepath": "x.wav", '])
    with pytest.raises(ManifestError, match=r"broken\.json:3: malformed JSON"):
        read_manifest(manifest)


@pytest.mark.parametrize("line, message", [
    (json.dumps({"duration": 1.0, "text": "x"}), "missing required key 'audio_filepath'"),
    (json.dumps({"audio_filepath": "a.wav", "text": "x"}), "missing required key 'duration'"),
    (_item(duration="long"), "'duration' must be a number"),
    (_item(duration=-1.0), "'duration' must be finite and >= 0"),
    (_item(offset=-0.1), "'offset' must be finite and >= 0"),
    (_item(text=5), "'text' must be a string"),
    ("[1, 2]", "expected a JSON object"),
])
def test_bad_manifest_line_error_names_file_line_and_problem(tmp_path, line, message):
    manifest = _write_lines(tmp_path / "bad.json", [_item(), line])
    with pytest.raises(ManifestError, match=r"bad\.json:2: .*" + message.replace("(", r"\(")):
        read_manifest(manifest)


def test_text_field_and_require_text(tmp_path):
    manifest = _write_lines(tmp_path / "m.json", [json.dumps(
        {"audio_filepath": "a.wav", "duration": 1.0, "normalized_text": "hi"})])
    assert read_manifest(manifest, text_field="normalized_text")[0].text == "hi"
    assert read_manifest(manifest)[0].text == ""
    with pytest.raises(ManifestError, match=r"m\.json:1: missing transcript key 'text'"):
        read_manifest(manifest, require_text=True)


def test_missing_manifest_is_an_error(tmp_path):
    with pytest.raises(ManifestError, match="nope.json"):
        read_manifest(tmp_path / "nope.json")


def test_check_audio_files_names_missing_file_and_manifest_line(tmp_path):
    (tmp_path / "here.wav").write_bytes(b"")
    manifest = _write_lines(tmp_path / "m.json", [_item(audio_filepath="here.wav"),
                                                  _item(audio_filepath="gone.wav")])
    with pytest.raises(ManifestError, match=r"(?s)1 audio file.*m\.json:2: .*gone\.wav"):
        check_audio_files(read_manifest(manifest))


def test_filter_entries_counts_and_logs_every_drop(caplog):
    entries = [ManifestEntry(f"{i}.wav", d) for i, d in enumerate([0.05, 1.0, 2.0, 30.0, 40.0])]
    with caplog.at_level(logging.INFO, logger="myna.data"):
        kept, report = filter_entries(entries, min_duration=0.1, max_duration=20.0, name="train")
    assert [e.duration for e in kept] == [1.0, 2.0]
    assert report.total == 5 and report.kept == 2 and report.num_dropped == 3
    assert report.dropped["duration < 0.1 s"] == (1, 0.05)
    assert report.dropped["duration > 20.0 s"] == (2, 70.0)
    assert "train: kept 2 of 5" in caplog.text and "2 with duration > 20.0 s" in caplog.text
    assert caplog.records[-1].levelno == logging.WARNING


def test_filter_entries_without_bounds_keeps_everything(caplog):
    entries = [ManifestEntry("a.wav", 1.0)]
    with caplog.at_level(logging.INFO, logger="myna.data"):
        kept, report = filter_entries(entries)
    assert kept == entries and report.num_dropped == 0 and "dropped nothing" in caplog.text


def test_write_manifest_round_trip_with_relative_paths(tmp_path):
    audio = tmp_path / "corpus" / "audio" / "x.wav"
    entries = [ManifestEntry(str(audio), 1.25, "one two", offset=0.5, extra={"speaker": "s"}),
               {"audio_filepath": str(tmp_path / "elsewhere.wav"), "duration": 2.0, "text": "x"}]
    path = write_manifest(entries, tmp_path / "corpus" / "m.json", relative_paths=True)
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"audio_filepath": "audio/x.wav", "duration": 1.25, "text": "one two",
                     "offset": 0.5, "speaker": "s"}
    back = read_manifest(path)
    assert back[0].audio_filepath == str(audio) and back[0].extra == {"speaker": "s"}
    assert back[1].audio_filepath == str(tmp_path / "elsewhere.wav")


def test_iter_manifest_reads_lazily_up_to_the_bad_line(tmp_path):
    manifest = _write_lines(tmp_path / "lazy.json", [_item(text="one"), _item(text="two"), "not json"])
    entries = iter_manifest(manifest)
    assert next(entries).text == "one" and next(entries).line == 2
    with pytest.raises(ManifestError, match=r"lazy\.json:3: malformed JSON"):
        next(entries)
    assert count_manifest_lines(manifest) == 3


def test_text_that_is_not_utf8_names_file_and_line(tmp_path):
    manifest = tmp_path / "latin1.json"
    manifest.write_bytes((_item() + "\n" + '{"audio_filepath": "a.wav", "duration": 1, "text": "caf\u00e9"}\n')
                         .encode("latin-1"))
    with pytest.raises(ManifestError, match=r"latin1\.json:2: not UTF-8 text"):
        read_manifest(manifest)


def test_no_manifest_path_at_all_is_a_manifest_error():
    with pytest.raises(ManifestError, match="no path given"):
        read_manifest(" , ")
