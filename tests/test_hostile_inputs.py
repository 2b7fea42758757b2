"""A corpus of malformed and hostile inputs, each driven through a real entry point of myna.

Every case is one input made in a temporary folder and the outcome it must have:

- an **error**: the ``myna`` command exits non-zero and writes exactly one line to stderr,
  ``myna COMMAND: error: ...``, that names the file (and line, member or key) — no traceback;
- or a **counted skip**: the utterance is named and counted, the rest goes on.

Around every case, nothing may be written outside the case's folder (archive members aimed at
``../`` or absolute paths, pickled code that would create a file) and no traceback may be printed.
The cases are grouped by what is malformed: manifests, audio, text (tokenizers, LMs), tar shards,
``.nemo`` archives, checkpoints, configs.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from myna.cli import main
from myna.config import load_config
from myna.data.factory import manifest_loader
from myna.data.tarred import TarredAudioDataset
from myna.interop.adapter import build_model
from myna.interop.nemo import read_nemo, save_nemo
from myna.text import train_sentencepiece

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SR = 16000


# ---- the world every case starts from ------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tokenizer, a tiny Transducer saved as ``good.nemo``, good WAVs and their manifest."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=2)) for _ in range(40)]
    tokenizer = train_sentencepiece(texts, root / "tok", vocab_size=24)
    cfg = load_config(CONF / "contextnet_rnnt_dummy.yaml", ["model.tokenizer.vocab_size=24"])
    torch.manual_seed(0)
    model = build_model(cfg.model, tokenizer).eval()
    save_nemo(model, root / "good.nemo", config=cfg)
    lines = []
    for i in range(4):
        path = root / f"good{i}.wav"
        sf.write(path, rng.normal(0, 0.1, int(SR * 0.4)).astype("float32"), SR)
        lines.append({"audio_filepath": str(path), "duration": 0.4, "text": texts[i]})
    (root / "good.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return {"root": root, "nemo": root / "good.nemo", "wav": root / "good0.wav", "lines": lines,
            "tokenizer": tokenizer, "archive": read_nemo(root / "good.nemo")}


class Sentinel:
    """A unique file name a hostile input tries to create outside its folder."""

    def __init__(self, tmp_path: Path):
        self.name = f"myna_escape_{uuid.uuid4().hex}"
        self.tmp = tmp_path

    @property
    def places(self) -> list[Path]:
        return [self.tmp.parent / self.name, self.tmp.parent.parent / self.name, Path("/tmp") / self.name,
                Path(self.tmp.anchor) / self.name, Path.cwd() / self.name]

    def check(self) -> None:
        written = [p for p in self.places if p.exists()]
        assert not written, f"written outside the target: {written}"
        assert not [p for p in self.tmp.parent.rglob(self.name)], "written outside the target"


@pytest.fixture
def sentinel(tmp_path, monkeypatch):
    # myna's temporary folders go under the case's folder, so ".." members aim at its parents.
    (tmp_path / "systmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "systmp"))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    s = Sentinel(tmp_path)
    yield s
    s.check()


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    import logging

    # An earlier main() (or Lightning's import) bound a handler to an earlier test's captured stderr.
    loggers = [logging.getLogger()] + [l for l in logging.Logger.manager.loggerDict.values()
                                       if isinstance(l, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def assert_one_line_error(rc: int, err: str, pattern: str) -> None:
    assert rc != 0
    # Log records (INFO lines) may come before; the error itself is one line, the last one.
    lines = [line for line in err.splitlines() if re.match(r"myna [\w-]+: error: ", line)]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), f"expected one error line, got: {err!r}"
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"


# ---- manifests -----------------------------------------------------------------------------------
def _good_line(world, **change) -> str:
    row = dict(world["lines"][0], **change)
    return json.dumps({k: v for k, v in row.items() if v is not _DROP})


_DROP = object()

MANIFESTS = {
    # name: (content maker, expected error pattern)
    "empty_file": (lambda w: b"", r"bad\.json: the manifest has no utterances"),
    "blank_lines_only": (lambda w: b"\n  \n\n", r"bad\.json: the manifest has no utterances"),
    "not_json": (lambda w: b"hello world\n", r"bad\.json:1: malformed JSON"),
    "json_list_line": (lambda w: b"[1, 2]\n", r"bad\.json:1: expected a JSON object"),
    "json_string_line": (lambda w: b'"x"\n', r"bad\.json:1: expected a JSON object"),
    "truncated_last_line": (lambda w: (_good_line(w) + "\n" + _good_line(w)[:30]).encode(),
                            r"bad\.json:2: malformed JSON"),
    "missing_audio_filepath": (lambda w: (_good_line(w, audio_filepath=_DROP) + "\n").encode(),
                               r"bad\.json:1: missing required key 'audio_filepath'"),
    "empty_audio_filepath": (lambda w: (_good_line(w, audio_filepath="") + "\n").encode(),
                             r"bad\.json:1: 'audio_filepath' must be a non-empty string"),
    "audio_filepath_number": (lambda w: (_good_line(w, audio_filepath=5) + "\n").encode(),
                              r"bad\.json:1: 'audio_filepath' must be a non-empty string"),
    "missing_duration": (lambda w: (_good_line(w, duration=_DROP) + "\n").encode(),
                         r"bad\.json:1: missing required key 'duration'"),
    "duration_string": (lambda w: (_good_line(w, duration="1.0") + "\n").encode(),
                        r"bad\.json:1: 'duration' must be a number"),
    "duration_negative": (lambda w: (_good_line(w, duration=-1) + "\n").encode(),
                          r"bad\.json:1: 'duration' must be finite and >= 0"),
    "duration_nan": (lambda w: _good_line(w).replace('"duration": 0.4', '"duration": NaN').encode() + b"\n",
                     r"bad\.json:1: 'duration' must be finite"),
    "duration_infinity": (lambda w: _good_line(w).replace('"duration": 0.4', '"duration": Infinity').encode() + b"\n",
                          r"bad\.json:1: 'duration' must be finite"),
    "duration_bool": (lambda w: (_good_line(w, duration=True) + "\n").encode(), r"bad\.json:1: 'duration' must be"),
    "offset_negative": (lambda w: (_good_line(w, offset=-2) + "\n").encode(), r"bad\.json:1: 'offset' must be"),
    "offset_string": (lambda w: (_good_line(w, offset="0") + "\n").encode(), r"bad\.json:1: 'offset' must be"),
    "text_number": (lambda w: (_good_line(w, text=3) + "\n").encode(), r"bad\.json:1: 'text' must be a string"),
    "text_list": (lambda w: (_good_line(w, text=["a"]) + "\n").encode(), r"bad\.json:1: 'text' must be a string"),
    "text_missing": (lambda w: (_good_line(w, text=_DROP) + "\n").encode(),
                     r"bad\.json:1: missing transcript key 'text'"),
    "non_utf8_byte": (lambda w: _good_line(w).replace("zero", "z\udcffro").encode("utf-8", "surrogateescape")
                      + b"\n" if "zero" in _good_line(w) else b'{"audio_filepath": "\xff"}\n',
                      r"bad\.json:1: not UTF-8"),
    "latin1_second_line": (lambda w: (_good_line(w) + "\n").encode() + b'{"text": "caf\xe9"}\n',
                           r"bad\.json:2: not UTF-8"),
    "utf16_file": (lambda w: (_good_line(w) + "\n").encode("utf-16"), r"bad\.json:1: "),
    "bom_then_json": (lambda w: b"\xef\xbb\xbf" + (_good_line(w) + "\n").encode(), r"bad\.json:1: malformed JSON"),
    "nul_bytes": (lambda w: b"\x00" * 64 + b"\n", r"bad\.json:1: malformed JSON"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_bad_manifest_is_one_line_naming_file_and_line(case, world, tmp_path, capsys, sentinel):
    make, pattern = MANIFESTS[case]
    bad = tmp_path / "bad.json"
    bad.write_bytes(make(world))
    rc, _, err = run_cli(["evaluate", "--model", world["nemo"], "--manifest", bad], capsys)
    assert_one_line_error(rc, err, pattern)


def test_manifest_that_is_missing_or_a_folder_is_named(world, tmp_path, capsys, sentinel):
    for target in (tmp_path / "nope.json", tmp_path):
        rc, _, err = run_cli(["evaluate", "--model", world["nemo"], "--manifest", target], capsys)
        assert_one_line_error(rc, err, re.escape(str(target)))


# ---- audio: a counted skip, named, in evaluation and in training batches --------------------------
def _put(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path``; returns the path."""
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _write(path: Path, data: np.ndarray, subtype: str = "FLOAT") -> Path:
    sf.write(path, data, SR, subtype=subtype)
    return path


AUDIO = {
    # name: (maker(tmp) -> (audio path, manifest duration), reason pattern)
    "nan_samples": (lambda t: (_write(t / "a.wav", np.full(SR // 2, np.nan, "float32")), 0.5), r"NaN/inf"),
    "some_nan": (lambda t: (_write(t / "a.wav", np.where(np.arange(SR // 2) % 7 == 0, np.nan, 0.1).astype("float32")),
                            0.5), r"NaN/inf sample"),
    "inf_samples": (lambda t: (_write(t / "a.wav", np.full(SR // 2, np.inf, "float32")), 0.5), r"NaN/inf"),
    "minus_inf_one_sample": (lambda t: (_write(t / "a.wav", np.r_[np.zeros(100), -np.inf].astype("float32")),
                                        101 / SR), r"1 NaN/inf sample"),
    "zero_samples": (lambda t: (_write(t / "a.wav", np.zeros(0, "float32")), 0.0), r"empty|0 samples|cannot read"),
    "zero_bytes": (lambda t: (_put(t / "a.wav", b""), 0.5), r"cannot read audio"),
    "random_bytes": (lambda t: (_put(t / "a.wav", os.urandom(3000)), 0.5),
                     r"cannot read audio"),
    "text_as_wav": (lambda t: (_put(t / "a.wav", "not audio\n" * 50), 0.5),
                    r"cannot read audio"),
    "truncated_header": (lambda t: (_put(t / "a.wav", b"RIFF\x24\x00\x00\x00WAVEfmt "), 0.5),
                         r"cannot read audio"),
    "missing_file": (lambda t: (t / "missing.wav", 0.5), r"audio file not found"),
    "directory": (lambda t: ((t / "dir.wav").mkdir() or t / "dir.wav", 0.5), r"is a directory"),
    "manifest_longer_than_file": (lambda t: (_write(t / "a.wav", np.zeros(SR // 10, "float32")), 3.0),
                                  r"ends past the end"),
    "offset_past_end": (lambda t: (_write(t / "a.wav", np.zeros(SR // 10, "float32")), 0.05), r"past the end"),
}


def _audio_case(case: str, tmp_path: Path, world) -> tuple[Path, str]:
    make, pattern = AUDIO[case]
    audio, duration = make(tmp_path)
    row = {"audio_filepath": str(audio), "duration": duration, "text": "one two"}
    if case == "offset_past_end":
        row["offset"] = 5.0
    manifest = tmp_path / "mixed.json"
    lines = [json.dumps(world["lines"][0]), json.dumps(row), json.dumps(world["lines"][1])]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, pattern


@pytest.mark.parametrize("case", sorted(AUDIO))
def test_bad_audio_in_evaluation_is_reported_not_scored(case, world, tmp_path, capsys, caplog, sentinel):
    manifest, pattern = _audio_case(case, tmp_path, world)
    rc, out, err = run_cli(["evaluate", "--model", world["nemo"], "--manifest", manifest], capsys)
    assert rc == 0, err
    assert "utterances=2 " in out  # the two good ones are scored
    assert re.search(r"not scored \(bad audio\): 1 utterance\(s\): .*mixed\.json:2", out)
    assert re.search(pattern, caplog.text)


@pytest.mark.parametrize("case", sorted(AUDIO))
def test_bad_audio_in_training_batches_is_a_named_skip(case, world, tmp_path, sentinel):
    manifest, pattern = _audio_case(case, tmp_path, world)
    loader = manifest_loader(str(manifest), world["tokenizer"], sample_rate=SR, batch_size=3, name="train_ds")
    batches = list(loader)
    skipped = [s for b in batches for s in b.get("skipped", [])]
    trained = sum(int(b["audio"].shape[0]) for b in batches if "audio" in b)
    assert trained == 2 and len(skipped) == 1
    assert skipped[0][0].endswith("mixed.json:2") and re.search(pattern, skipped[0][1])


def test_evaluation_with_only_bad_audio_is_an_error_not_a_score(world, tmp_path, capsys, sentinel):
    path = _write(tmp_path / "nan.wav", np.full(SR // 2, np.nan, "float32"))
    manifest = tmp_path / "all_bad.json"
    manifest.write_text(json.dumps({"audio_filepath": str(path), "duration": 0.5, "text": "one"}) + "\n")
    rc, _, err = run_cli(["evaluate", "--model", world["nemo"], "--manifest", manifest], capsys)
    assert_one_line_error(rc, err, r"all_bad\.json: no utterance could be scored")


def test_transcribe_of_nan_audio_is_one_line_naming_the_file(world, tmp_path, capsys, sentinel):
    path = _write(tmp_path / "nan.wav", np.full(SR // 2, np.nan, "float32"))
    rc, _, err = run_cli(["transcribe", "--model", world["nemo"], path], capsys)
    assert_one_line_error(rc, err, r"nan\.wav has \d+ NaN/inf")


# ---- text: tokenizers and language models ---------------------------------------------------------
def _tok_dir(t: Path, content: bytes | None) -> Path:
    folder = t / "tok"
    folder.mkdir()
    if content is not None:
        (folder / "tokenizer.model").write_bytes(content)
    return folder


TOKENIZERS = {
    "garbage_model": (lambda t: _tok_dir(t, os.urandom(500)), r"tok/tokenizer\.model"),
    "empty_model": (lambda t: _tok_dir(t, b""), r"tok/tokenizer\.model"),
    "text_model": (lambda t: _tok_dir(t, b"this is not a sentencepiece model\n"), r"tok/tokenizer\.model"),
    "folder_without_model": (lambda t: _tok_dir(t, None), r"tok has no tokenizer\.model"),
    "missing_folder": (lambda t: t / "nowhere", r"tokenizer not found: .*nowhere"),
}


@pytest.mark.parametrize("case", sorted(TOKENIZERS))
def test_bad_tokenizer_is_one_line_naming_it(case, world, tmp_path, capsys, sentinel):
    make, pattern = TOKENIZERS[case]
    tok = make(tmp_path)
    rc, _, err = run_cli(["train", CONF / "contextnet_rnnt_dummy.yaml",
                          f"model.train_ds.manifest_filepath={world['root'] / 'good.json'}",
                          f"model.tokenizer.dir={tok}", f"exp_manager.exp_dir={tmp_path / 'exp'}"], capsys)
    assert_one_line_error(rc, err, pattern)


LMS = {
    "missing": (lambda t: t / "none.arpa", r"none\.arpa"),
    "empty": (lambda t: _put(t / "lm.arpa", ""), r"lm\.arpa"),
    "no_data_section": (lambda t: _put(t / "lm.arpa", "hello\nworld\n"), r"lm\.arpa"),
    "bad_count": (lambda t: _put(t / "lm.arpa", "\\data\\\nngram 1=x\n"), r"lm\.arpa"),
    "binary": (lambda t: _put(t / "lm.arpa", os.urandom(400)), r"lm\.arpa"),
    "truncated": (lambda t: _put(t / "lm.arpa", "\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0 one\n"), r"lm\.arpa"),
}


@pytest.mark.parametrize("case", sorted(LMS))
def test_bad_language_model_is_one_line_naming_it(case, world, tmp_path, capsys, sentinel):
    make, pattern = LMS[case]
    lm = make(tmp_path)
    rc, _, err = run_cli(["evaluate", "--model", world["nemo"], "--manifest", world["root"] / "good.json",
                          "--decoding", "beam", "--lm", lm, "--lm-weight", "0.5"], capsys)
    assert_one_line_error(rc, err, pattern)


# ---- tar shards: refused members, lost utterances counted exactly --------------------------------
def _member(name: str, data: bytes, **kind) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in kind.items():
        setattr(info, key, value)
    return info, data


def _wav_bytes(seconds: float = 0.3, value: float | None = None) -> bytes:
    buffer = io.BytesIO()
    data = (np.random.default_rng(1).normal(0, 0.1, int(SR * seconds)) if value is None
            else np.full(int(SR * seconds), value)).astype("float32")
    sf.write(buffer, data, SR, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _shard_world(tmp: Path, names: list[str]) -> Path:
    """A tarred manifest listing ``names`` (all in shard 0), in tmp/tarred_audio_manifest.json."""
    manifest = tmp / "tarred_audio_manifest.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": n, "duration": 0.3, "text": "one", "shard_id": 0}) + "\n"
                                for n in names))
    return manifest


def _write_tar(path: Path, members, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


GOOD = ["u0.wav", "u1.wav", "u2.wav", "u3.wav"]


def _shard(tmp: Path, extra=(), drop=(), mode: str = "w") -> Path:
    members = [_member(n, _wav_bytes()) for n in GOOD if n not in drop] + list(extra)
    return _write_tar(tmp / "audio_0.tar", members, mode)


def _truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _cut_inside_member(path: Path, member: int) -> Path:
    """Cut the shard in the middle of member ``member``'s data (each member: 512 header + data)."""
    data = path.read_bytes()
    with tarfile.open(path) as tar:
        info = tar.getmembers()[member]
    path.write_bytes(data[: info.offset_data + info.size // 2])
    return path


SHARDS = {
    # name: (maker(tmp, sentinel) -> shard path, manifest names, utterances served, utterances lost,
    #        members refused or stray, reason pattern); served + lost is always every manifest utterance
    "member_missing": (lambda t, s: _shard(t, drop=["u2.wav"]), GOOD, 3, 1, 0, r"never read"),
    "two_members_missing": (lambda t, s: _shard(t, drop=["u0.wav", "u3.wav"]), GOOD, 2, 2, 0, r"never read"),
    "cut_inside_second_member": (lambda t, s: _cut_inside_member(_shard(t), 1), GOOD, 1, 3, None, r"corrupt|truncated"),
    "cut_inside_last_member": (lambda t, s: _cut_inside_member(_shard(t), 3), GOOD, 3, 1, None, r"corrupt|truncated"),
    "cut_inside_first_member": (lambda t, s: _cut_inside_member(_shard(t), 0), GOOD, 0, 4, None, r"corrupt|truncated"),
    "cut_at_half": (lambda t, s: _truncate(_shard(t), 0.5), GOOD, None, None, None, r"truncated|corrupt|never read"),
    "dotdot_member": (lambda t, s: _shard(t, extra=[_member(f"../{s.name}", b"x")]), GOOD, 4, 0, 1, r"outside"),
    "absolute_member": (lambda t, s: _shard(t, extra=[_member(f"/tmp/{s.name}", b"x")]), GOOD, 4, 0, 1,
                        r"absolute"),
    "symlink_member": (lambda t, s: _shard(t, extra=[_member("link.wav", b"", type=tarfile.SYMTYPE,
                                                             linkname="/etc/passwd")]), GOOD, 4, 0, 1, r"link"),
    "hardlink_member": (lambda t, s: _shard(t, extra=[_member("hard.wav", b"", type=tarfile.LNKTYPE,
                                                              linkname="u0.wav")]), GOOD, 4, 0, 1, r"link"),
    "symlink_listed_in_manifest": (lambda t, s: _shard(t, extra=[_member("l.wav", b"", type=tarfile.SYMTYPE,
                                                                         linkname="u0.wav")]),
                                   GOOD + ["l.wav"], 4, 1, 1, r"link"),
    "fifo_member": (lambda t, s: _shard(t, extra=[_member("fifo.wav", b"", type=tarfile.FIFOTYPE)]), GOOD, 4, 0, 1,
                    r"special file"),
    "chardev_member": (lambda t, s: _shard(t, extra=[_member("dev.wav", b"", type=tarfile.CHRTYPE)]), GOOD, 4, 0, 1,
                       r"special file"),
    "member_not_in_manifest": (lambda t, s: _shard(t, extra=[_member("stray.wav", _wav_bytes())]), GOOD, 4, 0, 1,
                               r"not in the manifest"),
    "nan_member": (lambda t, s: _shard(t, extra=[_member("nan.wav", _wav_bytes(value=np.nan))]),
                   GOOD + ["nan.wav"], 4, 1, 1, r"NaN/inf"),
    "empty_member": (lambda t, s: _shard(t, extra=[_member("e.wav", b"")]), GOOD + ["e.wav"], 4, 1, 1,
                     r"cannot read"),
    "garbage_member": (lambda t, s: _shard(t, extra=[_member("g.wav", os.urandom(700))]), GOOD + ["g.wav"], 4, 1, 1,
                       r"cannot read"),
    "not_a_tar": (lambda t, s: _put(t / "audio_0.tar", os.urandom(2048)), GOOD, 0, 4, 1, r"corrupt tar"),
    "empty_shard_file": (lambda t, s: _put(t / "audio_0.tar", b""), GOOD, 0, 4, None, r"never read"),
    "gzip_cut": (lambda t, s: _truncate(_shard(t, mode="w:gz"), 0.5), GOOD, None, None, None, r"corrupt|truncated"),
    "shard_missing": (lambda t, s: t / "audio_0.tar", GOOD, 0, 4, 1, r"corrupt tar|unreadable|No such file"),
}


@pytest.mark.parametrize("case", sorted(SHARDS))
def test_tar_shard_faults_are_refused_and_every_lost_utterance_counted(case, world, tmp_path, caplog, sentinel):
    make, names, served, lost, refused, pattern = SHARDS[case]
    make(tmp_path, sentinel)
    manifest = _shard_world(tmp_path, names)
    dataset = TarredAudioDataset(str(manifest), str(tmp_path / "audio_0.tar"), world["tokenizer"], SR)
    items = list(dataset)
    assert re.search(pattern, caplog.text), caplog.text
    assert len(items) + dataset.lost == len(names)  # every utterance served or counted lost, once
    if served is not None:
        assert (len(items), dataset.lost) == (served, lost), (dataset.unread, dataset.cut, dataset.undecodable)
    else:
        assert dataset.lost > 0
    if refused is not None:  # members passed over (refused, stray, undecodable), each logged
        assert dataset.skipped == refused


# ---- .nemo archives --------------------------------------------------------------------------------
def _nemo_with(world, tmp: Path, change=None, extra=(), drop=(), mode: str = "w") -> Path:
    """good.nemo's members, with member bytes replaced by ``change`` {name: bytes}, ``extra``
    (TarInfo, bytes) pairs added and names in ``drop`` left out."""
    change = change or {}
    members = []
    with tarfile.open(world["nemo"]) as tar:
        for info in tar.getmembers():
            name = info.name[2:] if info.name.startswith("./") else info.name
            if name in drop:
                continue
            data = change.get(name, tar.extractfile(info).read())
            members.append(_member(info.name, data))
    return _write_tar(tmp / "bad.nemo", members + list(extra), mode)


class _Payload:
    """Pickled, it would create a file when loaded with weights_only=False."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _pickled(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _weights(world, **change) -> bytes:
    state = dict(world["archive"].state_dict)
    for key, value in change.items():
        state[key.replace("__", ".")] = value
    return _pickled(state)


def _first_weight(world) -> str:
    return next(k for k, v in world["archive"].state_dict.items() if v.is_floating_point())


NEMOS = {
    # name: (maker(world, tmp, sentinel) -> path, error pattern)
    "dotdot_member": (lambda w, t, s: _nemo_with(w, t, extra=[_member(f"../../{s.name}", b"x")]),
                      r"bad\.nemo: member '\.\./\.\./myna_escape_\w+' would be written outside"),
    "dotdot_inside_name": (lambda w, t, s: _nemo_with(w, t, extra=[_member(f"a/../../{s.name}", b"x")]),
                           r"bad\.nemo: member 'a/\.\./\.\./myna_escape_\w+' would be written outside"),
    "absolute_member": (lambda w, t, s: _nemo_with(w, t, extra=[_member(f"/tmp/{s.name}", b"x")]),
                        r"bad\.nemo: member '/tmp/myna_escape_\w+' has an absolute"),
    "backslash_member": (lambda w, t, s: _nemo_with(w, t, extra=[_member(f"..\\{s.name}", b"x")]),
                         r"bad\.nemo: member .* outside"),
    "symlink_member": (lambda w, t, s: _nemo_with(w, t, extra=[_member("tok.model", b"", type=tarfile.SYMTYPE,
                                                                       linkname="/etc/passwd")]),
                       r"bad\.nemo: member 'tok\.model' is a link"),
    "symlink_to_parent_dir": (lambda w, t, s: _nemo_with(w, t, extra=[_member("up", b"", type=tarfile.SYMTYPE,
                                                                              linkname="..")]),
                              r"bad\.nemo: member 'up' is a link"),
    "hardlink_member": (lambda w, t, s: _nemo_with(w, t, extra=[_member("h", b"", type=tarfile.LNKTYPE,
                                                                        linkname="/etc/passwd")]),
                        r"bad\.nemo: member 'h' is a link"),
    "fifo_member": (lambda w, t, s: _nemo_with(w, t, extra=[_member("f", b"", type=tarfile.FIFOTYPE)]),
                    r"bad\.nemo: member 'f' is a device, FIFO"),
    "block_device_member": (lambda w, t, s: _nemo_with(w, t, extra=[_member("b", b"", type=tarfile.BLKTYPE)]),
                            r"bad\.nemo: member 'b' is a device"),
    "cut_in_half": (lambda w, t, s: _truncate(_nemo_with(w, t), 0.5), r"bad\.nemo: .*(truncated|not a readable)"),
    "cut_after_first_header": (lambda w, t, s: _truncate(_nemo_with(w, t), 0.001), r"bad\.nemo: "),
    "zero_bytes": (lambda w, t, s: _put(t / "bad.nemo", b""), r"bad\.nemo: "),
    "random_bytes": (lambda w, t, s: _put(t / "bad.nemo", os.urandom(5000)),
                     r"bad\.nemo: not a readable"),
    "gzip_cut": (lambda w, t, s: _truncate(_nemo_with(w, t, mode="w:gz"), 0.6), r"bad\.nemo: "),
    "zip_not_tar": (lambda w, t, s: _put(t / "bad.nemo", b"PK\x03\x04" + os.urandom(300)),
                    r"bad\.nemo: not a readable"),
    "no_config": (lambda w, t, s: _nemo_with(w, t, drop=["model_config.yaml", "myna_config.yaml"]),
                  r"bad\.nemo: no model_config\.yaml"),
    "no_weights": (lambda w, t, s: _nemo_with(w, t, drop=["model_weights.ckpt"]), r"bad\.nemo: no model_weights\.ckpt"),
    "config_yaml_syntax": (lambda w, t, s: _nemo_with(w, t, change={"myna_config.yaml": b"a: [1, 2\nb: {"}),
                           r"bad\.nemo member myna_config\.yaml: line \d+ not valid YAML"),
    "config_top_level_list": (lambda w, t, s: _nemo_with(w, t, change={"myna_config.yaml": b"- 1\n- 2\n"}),
                              r"bad\.nemo member myna_config\.yaml: the config must be a mapping"),
    "config_python_tag": (lambda w, t, s: _nemo_with(w, t, change={
        "model_config.yaml": f"x: !!python/object/apply:os.system ['touch {s.name}']\n".encode()}),
        r"bad\.nemo member model_config\.yaml: .*not valid YAML"),
    "config_not_utf8": (lambda w, t, s: _nemo_with(w, t, change={"myna_config.yaml": b"name: \xff\xfe\n"}),
                        r"bad\.nemo member myna_config\.yaml: not UTF-8"),
    "config_scalar": (lambda w, t, s: _nemo_with(w, t, change={"model_config.yaml": b"42\n"}),
                      r"bad\.nemo member model_config\.yaml: the config must be a mapping"),
    "config_unknown_class": (lambda w, t, s: _nemo_with(w, t, change={
        "myna_config.yaml": b"target: evil.Module\n"}), r"bad\.nemo: model class 'evil\.Module' is not supported"),
    "weights_pickle_payload": (lambda w, t, s: _nemo_with(w, t, change={
        "model_weights.ckpt": _pickled({"x": _Payload(str(Path("/tmp") / s.name))})}),
        r"bad\.nemo member model_weights\.ckpt: refused: not a plain tensor file$"),
    "myna_weights_pickle_payload": (lambda w, t, s: _nemo_with(w, t, extra=[_member(
        "myna_weights.ckpt", _pickled(_Payload(str(Path("/tmp") / s.name))))]),
        r"bad\.nemo member myna_weights\.ckpt: refused: not a plain tensor file$"),
    "weights_random_bytes": (lambda w, t, s: _nemo_with(w, t, change={"model_weights.ckpt": os.urandom(4000)}),
                             r"bad\.nemo member model_weights\.ckpt: not a readable tensor file"),
    "weights_truncated_zip": (lambda w, t, s: _nemo_with(w, t, change={
        "model_weights.ckpt": _weights(w)[:3000]}), r"bad\.nemo member model_weights\.ckpt: not a readable"),
    "weights_empty": (lambda w, t, s: _nemo_with(w, t, change={"model_weights.ckpt": b""}),
                      r"bad\.nemo member model_weights\.ckpt: not a readable tensor file \(empty\)"),
    "weights_a_tensor": (lambda w, t, s: _nemo_with(w, t, change={"model_weights.ckpt": _pickled(torch.zeros(3))}),
                         r"bad\.nemo member model_weights\.ckpt: not a state dict"),
    "weights_a_list": (lambda w, t, s: _nemo_with(w, t, change={"model_weights.ckpt": _pickled([1, 2])}),
                       r"bad\.nemo member model_weights\.ckpt: not a state dict"),
    "weights_all_nan": (lambda w, t, s: _nemo_with(w, t, change={"model_weights.ckpt": _pickled(
        {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
         for k, v in w["archive"].state_dict.items()})}), r"bad\.nemo member model_weights\.ckpt: tensor .* NaN/inf"),
    "weights_one_inf": (lambda w, t, s: _nemo_with(w, t, change={"model_weights.ckpt": _weights(
        w, **{_first_weight(w).replace(".", "__"): torch.full_like(w["archive"].state_dict[_first_weight(w)],
                                                                   float("inf"))})}), r"NaN/inf"),
    "weights_missing_key": (lambda w, t, s: _nemo_with(w, t, change={"model_weights.ckpt": _pickled(
        dict(list(w["archive"].state_dict.items())[1:]))}), r"bad\.nemo: weights do not fit the config: missing"),
    "weights_wrong_shape": (lambda w, t, s: _nemo_with(w, t, change={"model_weights.ckpt": _weights(
        w, **{_first_weight(w).replace(".", "__"): torch.zeros(1)})}), r"bad\.nemo: weights do not fit .*mis-shaped"),
    "tokenizer_garbage": (lambda w, t, s: _nemo_with(w, t, change={"tokenizer.model": os.urandom(300)}),
                          r"bad\.nemo: the tokenizer member is not a SentencePiece model"),
    "tokenizer_missing": (lambda w, t, s: _nemo_with(w, t, drop=["tokenizer.model"]),
                          r"bad\.nemo: the archive has no tokenizer member"),
    "duplicate_member": (lambda w, t, s: _nemo_with(w, t, extra=[_member("./tokenizer.model", b"x")]),
                         r"bad\.nemo: member 'tokenizer\.model' appears twice"),
}


@pytest.mark.parametrize("case", sorted(NEMOS))
def test_bad_nemo_is_one_line_naming_archive_and_member_and_writes_nothing_outside(case, world, tmp_path, capsys,
                                                                                   sentinel):
    make, pattern = NEMOS[case]
    path = make(world, tmp_path, sentinel)
    rc, out, err = run_cli(["transcribe", "--model", path, world["wav"]], capsys)
    assert_one_line_error(rc, err, pattern)
    assert "weights_only" not in err and "allowlist" not in err.lower() and "safe_globals" not in err
    assert out == ""


# ---- checkpoints: fine-tuning sources and last.ckpt on resume --------------------------------------
CHECKPOINTS = {
    "pickle_payload": (lambda t, s: _pickled({"state_dict": {"x": _Payload(str(Path("/tmp") / s.name))}}),
                       r"refused: not a plain tensor file$"),
    "pickle_payload_top": (lambda t, s: _pickled(_Payload(str(Path("/tmp") / s.name))),
                           r"refused: not a plain tensor file$"),
    "random_bytes": (lambda t, s: os.urandom(3000), r"not a readable tensor file"),
    "empty": (lambda t, s: b"", r"not a readable tensor file \(empty\)"),
    "truncated": (lambda t, s: _pickled({"state_dict": {"model.w": torch.zeros(1000)}})[:1500],
                  r"not a readable tensor file \(truncated or corrupt"),
    "text": (lambda t, s: b"global_step: 3\n", r"not a readable tensor file"),
}


@pytest.mark.parametrize("where", ["init_from_pretrained_model", "resume"])
@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_bad_checkpoint_is_one_line_naming_it(case, where, world, tmp_path, capsys, sentinel):
    make, pattern = CHECKPOINTS[case]
    exp = tmp_path / "exp"
    ckpt = exp / "checkpoints" / "last.ckpt" if where == "resume" else tmp_path / "init.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(make(tmp_path, sentinel))
    extra = [f"init_from_pretrained_model={ckpt}"] if where != "resume" else []
    rc, _, err = run_cli(["train", CONF / "contextnet_rnnt_dummy.yaml",
                          f"model.train_ds.manifest_filepath={world['root'] / 'good.json'}",
                          f"model.tokenizer.dir={world['root'] / 'tok'}", f"exp_manager.exp_dir={exp}",
                          "trainer.max_steps=1", "trainer.enable_progress_bar=false", *extra], capsys)
    assert_one_line_error(rc, err, re.escape(str(ckpt)) + ": " + pattern.lstrip("^"))


# ---- configs -------------------------------------------------------------------------------------
CONFIGS = {
    "yaml_syntax": (b"model: {train_ds: [1, 2\n", [], r"bad\.yaml: not valid YAML"),
    "top_level_list": (b"- a\n- b\n", [], r"bad\.yaml: a recipe must be a mapping"),
    "python_tag": (b"name: !!python/object/apply:os.system ['echo hi']\n", [], r"bad\.yaml: not valid YAML"),
    "not_utf8": (b"name: \xff\xfe\n", [], r"bad\.yaml"),
    "unknown_key": (b"trainer:\n  max_stepz: 3\n", [], r"bad\.yaml.*max_stepz"),
    "unknown_section": (b"trainr:\n  max_steps: 3\n", [], r"bad\.yaml.*trainr"),
    "scalar": (b"42\n", [], r"bad\.yaml: a recipe must be a mapping"),
    "override_unknown_key": (b"name: x\n", ["model.train_ds.batch_sise=4"], r"batch_sise"),
    "override_no_equals": (b"name: x\n", ["trainer.max_steps"], r"not of the form key=value"),
    "override_bad_yaml": (b"name: x\n", ["trainer.max_steps=[1"], r"not valid YAML"),
    "delete_unknown": (b"name: x\n", ["~trainer.nope"], r"cannot delete unknown key 'trainer.nope'"),
    "no_train_manifest": (b"name: x\n", [], r"manifest_filepath is required|no training text"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_config_is_one_line_naming_file_or_key(case, world, tmp_path, capsys, sentinel):
    content, overrides, pattern = CONFIGS[case]
    recipe = tmp_path / "bad.yaml"
    recipe.write_bytes(content)
    rc, _, err = run_cli(["train", recipe, f"exp_manager.exp_dir={tmp_path / 'exp'}", *overrides], capsys)
    assert_one_line_error(rc, err, pattern)


def test_missing_recipe_is_named(tmp_path, capsys):
    rc, _, err = run_cli(["train", tmp_path / "none.yaml"], capsys)
    assert_one_line_error(rc, err, r"recipe not found: .*none\.yaml")


# ---- myna data tar inputs ------------------------------------------------------------------------
def test_data_tar_with_missing_audio_names_the_manifest_line(world, tmp_path, capsys, sentinel):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(world["lines"][0]) + "\n"
                        + json.dumps({"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1, "text": "a"}) + "\n")
    rc, _, err = run_cli(["data", "tar", "--manifest_path", manifest, "--target_dir", tmp_path / "out",
                          "--num_shards", "1"], capsys)
    assert_one_line_error(rc, err, r"gone\.wav")


# ---- the real process: one line on stderr, traceback only with --debug -----------------------------
def test_real_process_prints_one_line_and_traceback_only_with_debug(world, tmp_path, monkeypatch):
    bad = tmp_path / "x.nemo"
    bad.write_bytes(os.urandom(100))
    argv = ["transcribe", "--model", str(bad), str(world["wav"])]
    plain = subprocess.run([sys.executable, "-m", "myna.cli", *argv], capture_output=True, text=True,
                           env={**os.environ, "MYNA_DEBUG": ""})
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    lines = plain.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"myna transcribe: error: {bad}: not a readable .nemo (tar) archive")
    with pytest.raises(ValueError, match="not a readable .nemo"):  # --debug: the exception and its traceback
        main(["--debug", *argv])
    monkeypatch.setenv("MYNA_DEBUG", "1")
    with pytest.raises(ValueError, match="not a readable .nemo"):
        main(argv)
