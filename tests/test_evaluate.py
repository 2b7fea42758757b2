"""evaluate_manifest with every decoding strategy: per-utterance JSON lines, corpus error counts."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from myna.cli import main
from myna.config import load_config
from myna.evaluate import evaluate_manifest
from myna.interop.adapter import build_model
from myna.text import train_sentencepiece
from myna.text.normalize import ScoringNormalizer

CONF = Path(__file__).resolve().parents[1] / "conf"

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=3)) for _ in range(40)]
    tokenizer = train_sentencepiece(texts, root / "tok", vocab_size=24)
    cfg = load_config(CONF / "contextnet_rnnt_dummy.yaml")
    torch.manual_seed(0)
    model = build_model(cfg.model, tokenizer).eval()
    lines = []
    for i in range(5):
        path = root / f"utt{i}.wav"
        seconds = 0.3 + 0.1 * i
        sf.write(path, rng.normal(0, 0.1, int(16000 * seconds)).astype("float32"), 16000)
        lines.append(json.dumps({"audio_filepath": str(path), "duration": seconds, "text": texts[i], "utt_id": f"u{i}"}))
    manifest = root / "test.json"
    manifest.write_text("\n".join(lines) + "\n")
    arpa = root / "digits.arpa"
    arpa.write_text("\\data\\\nngram 1=12\n\n\\1-grams:\n-99 <s>\n-1.0 </s>\n"
                    + "".join(f"-1.0 {w}\n" for w in WORDS) + "\n\\end\\\n", encoding="utf-8")
    return model, manifest, arpa


@pytest.mark.parametrize("strategy", ["greedy", "modified_beam", "beam"])
def test_evaluate_writes_one_json_line_per_utterance(tiny_setup, tmp_path, strategy):
    model, manifest, _ = tiny_setup
    out = tmp_path / "hyps.jsonl"
    result = evaluate_manifest(model, manifest, batch_size=2, output=out, progress=False, strategy=strategy,
                               beam_size=2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"u{i}" for i in range(5)]
    assert {"reference", "hypothesis", "word_errors", "wer_contribution"} <= set(rows[0])
    assert sum(r["wer_contribution"] for r in rows) == pytest.approx(result.rates.wer)
    errors = result.rates.substitutions + result.rates.insertions + result.rates.deletions
    assert sum(r["word_errors"] for r in rows) == errors
    assert result.num_utterances == 5 and result.rtfx > 0


def test_modified_beam_of_one_gives_greedy_one_symbol_transcripts(tiny_setup, tmp_path):
    model, manifest, _ = tiny_setup
    greedy_out, beam_out = tmp_path / "g.jsonl", tmp_path / "b.jsonl"
    evaluate_manifest(model, manifest, output=greedy_out, progress=False, strategy="greedy", max_symbols_per_step=1)
    evaluate_manifest(model, manifest, output=beam_out, progress=False, strategy="modified_beam", beam_size=1)
    hyp = lambda p: [json.loads(line)["hypothesis"] for line in p.read_text().splitlines()]  # noqa: E731
    assert hyp(greedy_out) == hyp(beam_out)


def test_cli_evaluate_with_beam_and_lm_prints_the_error_counts(tiny_setup, tmp_path, monkeypatch, capsys):
    model, manifest, arpa = tiny_setup
    monkeypatch.setattr("myna.load", lambda path: model)
    code = main(["evaluate", "--model", "m.nemo", "--manifest", str(manifest), "--decoding", "modified_beam",
                 "--beam-size", "2", "--lm", str(arpa), "--lm-weight", "0.3", "--output", str(tmp_path / "h.jsonl")])
    printed = capsys.readouterr().out
    assert code == 0
    for field in ("WER:", "CER:", "substitutions=", "insertions=", "deletions=", "RTFx="):
        assert field in printed
    assert main(["evaluate", "--model", "m.nemo", "--manifest", str(manifest), "--lm-weight", "0.3"]) == 2


def test_upper_case_references_score_as_the_tokenizer_writes_them(tiny_setup, tmp_path, monkeypatch, capsys):
    model, manifest, _ = tiny_setup
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    upper = tmp_path / "upper.json"
    upper.write_text("".join(json.dumps(dict(r, text=r["text"].upper())) + "\n" for r in rows))
    lower = evaluate_manifest(model, manifest, progress=False)
    shouted = evaluate_manifest(model, upper, progress=False)
    assert shouted.rates == lower.rates
    raw = evaluate_manifest(model, upper, progress=False, normalizer=ScoringNormalizer(None))
    assert raw.rates.cer > lower.rates.cer  # compared as written, no upper-case letter matches
    # A character the tokenizer cannot write is counted once, with how often it occurs.
    accented = tmp_path / "accented.json"
    accented.write_text("".join(json.dumps(dict(r, text=r["text"] + " café!")) + "\n" for r in rows[:2]))
    monkeypatch.setattr("myna.load", lambda path: model)
    assert main(["evaluate", "--model", "m.nemo", "--manifest", str(accented)]) == 0
    printed = capsys.readouterr().out
    assert "text normalisation of reference and hypothesis: the tokenizer's (NFKC, lower-cased)" in printed
    assert re.search(r"^\d+ reference character\(s\) in 2 utterance\(s\) cannot be written by the tokenizer.*'!' x2",
                     printed, re.M)
