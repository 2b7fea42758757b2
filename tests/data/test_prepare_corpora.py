"""Each corpus preparer on a tiny replica of the corpus's own layout (real file names and transcript
line formats, SPHERE files where the corpus ships them), plus downloads from a loopback server."""

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from myna.cli import main as cli_main
from myna.data.prepare import aishell, an4, librispeech
from myna.data.prepare.common import PrepareError
from myna.data.prepare.fisher import normalize_fisher, prepare_fisher
from myna.data.prepare.hub5 import prepare_hub5
from myna.data.prepare.switchboard import normalize_switchboard, prepare_switchboard
from myna.data.prepare.tedlium import prepare_tedlium
from myna.data.prepare.common_voice import prepare_common_voice

sys.path.insert(0, str(Path(__file__).parent))
from loopback_server import LoopbackServer  # noqa: E402
from shorten_encoder import sphere_pcm, sphere_ulaw, speech_like  # noqa: E402


def lines(path):
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]


def wav(path):
    return sf.read(path, dtype="int16", always_2d=True)


# --- LibriSpeech -------------------------------------------------------------------------------

def make_librispeech(root, dashed="dev-clean"):
    audio = {}
    for spk, chap in (("1272", "128104"), ("84", "121123")):
        folder = root / "LibriSpeech" / dashed / spk / chap
        folder.mkdir(parents=True)
        rows = []
        for k, text in enumerate(["MISTER QUILTER IS THE APOSTLE", "NOR IS MISTER QUILTER'S MANNER"]):
            utt = f"{spk}-{chap}-{k:04d}"
            x = speech_like(1600 + 400 * k, 1, 16000, seed=k)[:, 0]
            sf.write(folder / f"{utt}.flac", x, 16000, subtype="PCM_16")
            audio[utt] = x
            rows.append(f"{utt} {text}\n")
        (folder / f"{spk}-{chap}.trans.txt").write_text("".join(rows))
    return audio


def test_librispeech_manifest_text_durations_and_wav_copies(tmp_path):
    audio = make_librispeech(tmp_path / "src")
    out = librispeech.prepare_librispeech(tmp_path / "src", tmp_path / "out", "dev_clean")
    got = lines(out["dev_clean"])
    assert len(got) == 4 and got[0]["text"] == "mister quilter is the apostle"
    assert {Path(e["audio_filepath"]).suffix for e in got} == {".flac"}
    assert [e["duration"] for e in got[:2]] == [0.1, 0.125]
    out = librispeech.prepare_librispeech(tmp_path / "src", tmp_path / "wav", "dev-clean",
                                          audio_format="wav", workers=2)
    got = lines(out["dev_clean"])
    first = Path(got[0]["audio_filepath"])
    assert first.parent.name == "dev-clean-processed" and first.suffix == ".wav"
    np.testing.assert_array_equal(wav(first)[0][:, 0], audio[first.stem])


def test_librispeech_download_from_mirror_and_train_960(tmp_path, monkeypatch):
    make_librispeech(tmp_path / "build", "train-clean-5")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(tmp_path / "build" / "LibriSpeech", arcname="LibriSpeech")
    blob = archive.getvalue()
    monkeypatch.setitem(librispeech.LIBRISPEECH_SETS, "train_clean_5",
                        ("31", hashlib.md5(blob).hexdigest()))
    with LoopbackServer({"/31/train-clean-5.tar.gz": blob}) as server:
        out = librispeech.prepare_librispeech(tmp_path / "src", tmp_path / "out", "train_clean_5",
                                              download=True, base_url=server.url)
        librispeech.prepare_librispeech(tmp_path / "src", tmp_path / "out", "train_clean_5",
                                        download=True, base_url=server.url)
        assert len(server.requests) == 1  # the rerun neither downloads nor re-extracts
    assert len(lines(out["train_clean_5"])) == 4
    for name in librispeech.TRAIN_960:  # train_960.json appears once the three sets are there
        (tmp_path / "out" / f"{name}.json").write_text(json.dumps({"n": name}) + "\n")
    out = librispeech.prepare_librispeech(tmp_path / "src", tmp_path / "out", "train_clean_5")
    assert [e["n"] for e in lines(out["train_960"])] == list(librispeech.TRAIN_960)


# --- AN4 ---------------------------------------------------------------------------------------

def test_an4_converts_sphere_and_parses_transcriptions(tmp_path):
    src = tmp_path / "src" / "an4"
    utts = {"an4_clstk": [("an251-fash-b", "<s> YES </s>"), ("cen7-fash-b", "<s> P I T T </s>")],
            "an4test_clstk": [("an406-fcaw-b", "RUBOUT G M E F THREE NINE")]}
    audio = {}
    for set_dir, items in utts.items():
        for k, (utt, _) in enumerate(items):
            spk = utt.split("-")[1]
            x = speech_like(3200 + 160 * k, 1, 16000, seed=k)
            audio[utt] = x
            (src / "wav" / set_dir / spk).mkdir(parents=True, exist_ok=True)
            (src / "wav" / set_dir / spk / f"{utt}.sph").write_bytes(
                sphere_pcm(x, 16000, big_endian=True))
    (src / "etc").mkdir()
    (src / "etc" / "an4_train.transcription").write_text(
        "".join(f"{t} ({u})\n" for u, t in utts["an4_clstk"]))
    (src / "etc" / "an4_test.transcription").write_text(
        "".join(f"{t} ({u})\n" for u, t in utts["an4test_clstk"]))
    out = an4.prepare_an4(tmp_path / "src", tmp_path / "out")
    train, test = lines(out["train"]), lines(out["test"])
    assert [e["text"] for e in train] == ["yes", "p i t t"] and test[0]["text"] == \
        "rubout g m e f three nine"
    assert train[1]["audio_filepath"].endswith("wav/an4_clstk/fash/cen7-fash-b.wav")
    samples, rate = wav(test[0]["audio_filepath"])
    assert rate == 16000 and test[0]["duration"] == 0.2
    np.testing.assert_array_equal(samples, audio["an406-fcaw-b"])
    (src / "etc" / "an4_test.transcription").write_text("NO (an999-fxyz-b)\n")
    with pytest.raises(PrepareError, match=r"an4_test\.transcription:1: no audio for an999-fxyz-b"):
        an4.prepare_an4(tmp_path / "src", tmp_path / "out")


# --- Fisher ------------------------------------------------------------------------------------

FISHER_LINES = [
    "# fe_03_{id}.sph",
    "# Transcribed at the LDC",
    "",
    "0.50 1.50 A: [noise] so i bought a 401k",
    "1.00 2.00 B: yeah (( i think ))",
    "1.60 2.20 A: what's \"that\"?",
    "2.10 3.10 B: [laughter] it's 'mine' too",
    "2.30 3.30 A: okay.",
    "#3.40 3.90 A: commented out",
]


def make_fisher(root, n=10):
    signals = {}
    for i in range(n):
        file_id = f"fe_03_{i + 1:05d}"
        group = f"{(i + 1) // 100:03d}"
        x = speech_like(8000 * 4, 2, 8000, seed=i)
        signals[file_id] = x
        audio_dir = root / "LDC2004S13" / "fisher_eng_tr_sp_d1" / "audio" / group
        trans_dir = root / "LDC2004T19" / "fe_03_p1_tran" / "data" / "trans" / group
        audio_dir.mkdir(parents=True, exist_ok=True)
        trans_dir.mkdir(parents=True, exist_ok=True)
        (audio_dir / f"{file_id}.sph").write_bytes(sphere_pcm(x, 8000, shorten=True))
        (trans_dir / f"{file_id}.txt").write_text("\n".join(FISHER_LINES).format(id=file_id))
    return signals


def test_fisher_slices_per_channel_normalises_and_splits(tmp_path):
    pytest.importorskip("desphere")
    signals = make_fisher(tmp_path / "src")
    out = prepare_fisher(tmp_path / "src", tmp_path / "out", min_slice_duration=1.5)
    train, val, test = (lines(out[s]) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (8, 1, 1)  # 8/1/1 files, one slice each
    # A: 0.5-1.5 (1.0 s) + 1.6-2.2 -> 1.6 s >= 1.5: slice 1; B: the (( line is dropped, the
    # [laughter] line alone is 1.0 s < 1.5 and A's last line too: leftovers, dropped.
    assert [Path(e["audio_filepath"]).name for e in train[:2]] == ["fe_03_00001_001.wav",
                                                                    "fe_03_00002_001.wav"]
    a1 = train[0]
    assert a1["text"] == "[noise] so i bought a four o one k what's that"
    samples, rate = wav(a1["audio_filepath"])
    x = signals["fe_03_00001"][:, 0]
    np.testing.assert_array_equal(samples[:, 0], np.concatenate([x[4000:12000], x[12800:17600]]))
    assert a1["duration"] == len(samples) / 8000
    assert all("/val/" in e["audio_filepath"] for e in val)
    assert normalize_fisher("[laughter] it's 'mine'", remove_noises=True) == " it's mine"
    assert normalize_fisher("[noise] ok", noises_to_emoji=True) == "\U0001F615 ok"


def test_fisher_rerun_skips_done_files_and_workers_agree(tmp_path):
    pytest.importorskip("desphere")
    make_fisher(tmp_path / "src", n=3)
    out1 = prepare_fisher(tmp_path / "src", tmp_path / "a", min_slice_duration=1.5, workers=2)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.wav")}
    out2 = prepare_fisher(tmp_path / "src", tmp_path / "a", min_slice_duration=1.5)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.wav")} == stamps
    assert lines(out2["train"]) == lines(out1["train"])
    serial = prepare_fisher(tmp_path / "src", tmp_path / "b", min_slice_duration=1.5)
    assert [e["text"] for e in lines(serial["train"])] == [e["text"] for e in lines(out1["train"])]
    victim = Path(lines(out1["train"])[0]["audio_filepath"])
    victim.write_bytes(b"truncated")  # a damaged output is redone
    prepare_fisher(tmp_path / "src", tmp_path / "a", min_slice_duration=1.5)
    assert wav(victim)[0].shape[0] > 0


# --- HUB5 --------------------------------------------------------------------------------------

def test_hub5_stm_rules_speaker_slices_and_vocab(tmp_path):
    src = tmp_path / "src"
    (src / "hub5e_00" / "english").mkdir(parents=True)
    x = speech_like(8000 * 6, 2, 8000, seed=5)
    (src / "hub5e_00" / "english" / "en_4156.sph").write_bytes(
        sphere_ulaw(np.full((8000 * 6, 2), 0xFF, np.uint8), 8000))
    (src / "hub5e_00" / "english" / "sw_4390.sph").write_bytes(sphere_pcm(x, 8000))
    stm = src / "2000_hub5_eng_eval_tr" / "reference"
    stm.mkdir(parents=True)
    (stm / "hub5e00.english.000405.stm").write_text(
        ";; comment\n"
        "en_4156 A en_4156_A 0.00 1.00 <O,en,F,en-F> IGNORE_TIME_SEGMENT_IN_SCORING\n"
        "en_4156 A en_4156_A 1.00 2.50 <O,en,F,en-F> oh yeah (%HESITATION)\n"
        "sw_4390 B sw_4390_B 3.00 4.00 <O,en,M,en-M> <B_ASIDE> WELL- (THAT'S) it <E_ASIDE>\n"
        "sw_4390 B sw_4390_B 0.50 1.50 <O,en,M,en-M> hi there\n"
        "sw_4390 A sw_4390_A 0.20 0.40 <O,en,F,en-F> um\n")
    out = prepare_hub5(src, tmp_path / "out", min_slice_duration=1.0)
    got = lines(out["hub5"])
    assert [Path(e["audio_filepath"]).name for e in got] == \
        ["en_4156_a_001.wav", "sw_4390_b_001.wav", "sw_4390_b_002.wav"]
    assert [e["text"] for e in got] == ["oh yeah uh", "hi there", "well that's it"]
    samples, _ = wav(got[1]["audio_filepath"])
    np.testing.assert_array_equal(samples[:, 0], x[4000:12000, 1])  # speaker B = column 1
    vocab = (tmp_path / "out" / "vocab.txt").read_text().splitlines()
    assert vocab == sorted(set("oh yeah uhwell that's ithi thereum")) and "'" in vocab


# --- Aishell-1 / Aishell-2 ---------------------------------------------------------------------

def make_aishell1(root):
    texts = {"BAC009S0002W0122": "而 对 楼市 成交", "BAC009S0724W0121": "甚至 出现 交易",
             "BAC009S0764W0121": "交易 市场"}
    splits = {"BAC009S0002W0122": ("train", "S0002"), "BAC009S0724W0121": ("dev", "S0724"),
              "BAC009S0764W0121": ("test", "S0764")}
    base = root / "data_aishell"
    (base / "transcript").mkdir(parents=True)
    (base / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "".join(f"{k} {v}\n" for k, v in texts.items()), encoding="utf-8")
    for utt, (split, spk) in splits.items():
        (base / "wav" / split / spk).mkdir(parents=True)
        sf.write(base / "wav" / split / spk / f"{utt}.wav", np.zeros(1600, np.int16), 16000)
    sf.write(base / "wav" / "train" / "S0002" / "BAC009S0002W0999.wav", np.zeros(800, np.int16),
             16000)  # untranscribed: skipped
    return base


def test_aishell1_removes_spaces_skips_untranscribed_and_counts_vocab(tmp_path):
    make_aishell1(tmp_path / "src")
    out = aishell.prepare_aishell1(tmp_path / "src", tmp_path / "out")
    train = lines(out["train"])
    assert [e["text"] for e in train] == ["而对楼市成交"] and train[0]["duration"] == 0.1
    assert [e["text"] for e in lines(out["test"])] == ["交易市场"]
    vocab = out["vocab"].read_text(encoding="utf-8").splitlines()
    assert vocab[0] == "交" and set(vocab) == set("而对楼市成交甚至出现交易市场")


def test_aishell1_download_extracts_both_archive_levels(tmp_path, monkeypatch):
    base = make_aishell1(tmp_path / "build")
    for split in ("train", "dev", "test"):  # the corpus ships wav/<speaker>.tar.gz
        for spk in list((base / "wav" / split).iterdir()):
            with tarfile.open(base / "wav" / f"{spk.name}.tar.gz", "w:gz") as tar:
                tar.add(spk, arcname=f"{split}/{spk.name}")
    for split in ("train", "dev", "test"):
        for f in (base / "wav" / split).rglob("*.wav"):
            f.unlink()
        for d in sorted((base / "wav" / split).rglob("*"), reverse=True):
            d.rmdir()
        (base / "wav" / split).rmdir()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(base, arcname="data_aishell")
    blob = archive.getvalue()
    monkeypatch.setattr(aishell, "AISHELL1_MD5", hashlib.md5(blob).hexdigest())
    with LoopbackServer({"/33/data_aishell.tgz": blob}) as server:
        out = aishell.prepare_aishell1(tmp_path / "src", tmp_path / "out", download=True,
                                       url=f"{server.url}/33/data_aishell.tgz")
    assert [e["text"] for e in lines(out["dev"])] == ["甚至出现交易"]


def test_aishell2_both_layouts_and_missing_transcript_error(tmp_path):
    nemo = tmp_path / "nemo"
    for split, utt, text in (("train", "IC0001W0001", "厨房 用具"), ("dev", "ID0116W0001", "hello"),
                             ("test", "IT0011W0001", "换一首歌")):
        (nemo / "wav" / split / utt[1:6]).mkdir(parents=True)
        sf.write(nemo / "wav" / split / utt[1:6] / f"{utt}.wav", np.zeros(800, np.int16), 16000)
        (nemo / "transcript" / split).mkdir(parents=True)
        (nemo / "transcript" / split / "trans.txt").write_text(f"{utt}\t{text}\n", encoding="utf-8")
    out = aishell.prepare_aishell2(nemo, tmp_path / "out")
    assert [e["text"] for e in lines(out["train"])] == ["厨房 用具"]
    assert [e["text"] for e in lines(out["dev"])] == ["HELLO"]
    assert out["vocab"].read_text(encoding="utf-8").splitlines() == list("厨房 用具")
    orig = tmp_path / "AISHELL-2" / "iOS" / "data"
    (orig / "wav" / "C0001").mkdir(parents=True)
    sf.write(orig / "wav" / "C0001" / "IC0001W0001.wav", np.zeros(800, np.int16), 16000)
    (orig / "wav.scp").write_text("IC0001W0001\twav/C0001/IC0001W0001.wav\n")
    (orig / "trans.txt").write_text("IC0001W0001\t厨房用具\n", encoding="utf-8")
    out = aishell.prepare_aishell2(tmp_path / "AISHELL-2", tmp_path / "out2")
    assert [e["text"] for e in lines(out["train"])] == ["厨房用具"]
    (orig / "trans.txt").write_text("IC0001W0002\t别的\n", encoding="utf-8")
    with pytest.raises(PrepareError, match=r"IC0001W0001\.wav: no transcript for IC0001W0001"):
        aishell.prepare_aishell2(tmp_path / "AISHELL-2", tmp_path / "out3")


# --- Common Voice ------------------------------------------------------------------------------

def test_common_voice_tsv_mp3_to_16k_wav(tmp_path):
    lang = tmp_path / "src" / "cv-corpus-9.0-2022-04-27" / "en"
    (lang / "clips").mkdir(parents=True)
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    rows = [("common_voice_en_1.mp3", 'He said "hello.'), ("common_voice_en_2.mp3", "  Fine  "),
            ("common_voice_en_3.mp3", "missing clip")]
    for name, _ in rows[:2]:
        sf.write(lang / "clips" / name, 0.1 * np.sin(np.arange(48000) / 10), 48000, format="MP3")
    (lang / "test.tsv").write_text(header + "".join(f"c\t{n}\t{s}\t2\t0\t\t\t\ten\t\n"
                                                    for n, s in rows), encoding="utf-8")
    out = prepare_common_voice(tmp_path / "src", tmp_path / "out", splits=["test"])
    got = lines(out["test"])
    assert [e["text"] for e in got] == ['he said "hello.', "fine"]  # first row kept; missing skipped
    assert out["test"].name == "commonvoice_test_manifest.json"
    info = sf.info(got[0]["audio_filepath"])
    assert (info.samplerate, info.channels) == (16000, 1) and abs(got[0]["duration"] - 1.0) < 0.01


# --- TED-LIUM 3 --------------------------------------------------------------------------------

def test_tedlium_offsets_and_kaldi_text_rules(tmp_path):
    root = tmp_path / "TEDLIUM_release-3" / "legacy"
    x = speech_like(16000 * 3, 1, 16000, seed=2)
    for split in ("train", "dev", "test"):
        (root / split / "sph").mkdir(parents=True)
        (root / split / "stm").mkdir(parents=True)
        (root / split / "sph" / "AaronHuey_2010X.sph").write_bytes(sphere_pcm(x, 16000))
        (root / split / "stm" / "AaronHuey_2010X.stm").write_text(
            "AaronHuey_2010X 1 AaronHuey_2010X 0.00 0.50 <o,f0,male> ignore_time_segment_in_scoring\n"
            "AaronHuey_2010X 1 AaronHuey_2010X 0.50 1.75 <o,f0,male> they 're <unk> here {NOISE}\n"
            "AaronHuey_2010X 1 AaronHuey_2010X 1.75 2.90 <o,f0,male> ' cause it 's fine\n")
    out = prepare_tedlium(tmp_path, tmp_path / "out")
    got = lines(out["dev"])
    assert [(e["offset"], e["duration"], e["text"]) for e in got] == \
        [(0.5, 1.25, "they're here"), (1.75, 1.15, "'cause it's fine")]
    samples, _ = wav(got[0]["audio_filepath"])
    np.testing.assert_array_equal(samples, x)


# --- Switchboard -------------------------------------------------------------------------------

def test_switchboard_word_map_offsets_and_dev_split(tmp_path):
    assert normalize_switchboard("[laughter-yes] -[th]at's a[bout]- {yuppiedom} them_1 AT&T") == \
        "yes -at's a- yuppiedom them at and t"
    assert normalize_switchboard("[silence] [noise]") == ""
    assert normalize_switchboard("[noise] hi", remove_noises=True) == "hi"
    src = tmp_path / "src"
    for call in ("2001", "2005"):
        audio = src / "LDC97S62" / "swb1" / "disc1" / "data"
        audio.mkdir(parents=True, exist_ok=True)
        codes = np.stack([np.full(8000 * 3, 0x10, np.uint8), np.full(8000 * 3, 0xEF, np.uint8)], 1)
        (audio / f"sw0{call}.sph").write_bytes(sphere_ulaw(codes, 8000))
        for side in "AB":
            trans = src / "swb_ms98_transcriptions" / call[:2] / call
            trans.mkdir(parents=True, exist_ok=True)
            (trans / f"sw{call}{side}-ms98-a-trans.text").write_text(
                f"sw{call}{side}-ms98-a-0001 0.000000 0.977625 [silence]\n"
                f"sw{call}{side}-ms98-a-0002 0.977625 2.500000 hi um [laughter-yeah]\n")
    out = prepare_switchboard(src, tmp_path / "out", dev_utterances=2)
    dev, train = lines(out["dev"]), lines(out["train"])
    assert [Path(e["audio_filepath"]).name for e in dev] == ["sw02001-A.wav", "sw02001-B.wav"]
    assert len(train) == 2 and dev[0]["text"] == "hi um yeah" and dev[0]["offset"] == 0.977625
    samples, _ = wav(dev[1]["audio_filepath"])
    assert samples.shape == (24000, 1) and set(samples[:, 0].tolist()) == {132}  # side B, mu-law 0xEF


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_prepare_prints_manifests_and_reports_errors_in_one_line(tmp_path, capsys):
    make_librispeech(tmp_path / "src")
    assert cli_main(["data", "prepare", "librispeech", "--source", str(tmp_path / "src"),
                     "--out-dir", str(tmp_path / "out"), "--data-sets", "dev_clean"]) == 0
    assert capsys.readouterr().out.strip().endswith("dev_clean.json")
    assert cli_main(["data", "prepare", "hub5", "--source", str(tmp_path / "none"),
                     "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("myna data prepare hub5: error:") and len(err.splitlines()) == 1
