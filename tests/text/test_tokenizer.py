"""myna.text: SentencePiece tokenizers, NeMo's file formats and NeMo tokenizer parity."""

import json

import numpy as np
import pytest

from myna.text import SentencePieceTokenizer, load_tokenizer, train_sentencepiece

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _digit_texts(n=300):
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(DIGITS, size=rng.integers(1, 5))) for _ in range(n)]


def test_train_sentencepiece_writes_nemo_files_and_loads_back(tmp_path):
    tok = train_sentencepiece(_digit_texts(), tmp_path / "tok", vocab_size=32)
    for name in ("tokenizer.model", "tokenizer.vocab", "vocab.txt"):
        assert (tmp_path / "tok" / name).is_file()
    assert tok.vocab_size == 32 and tok.id_to_piece(0) == "<unk>"
    vocab_lines = (tmp_path / "tok" / "vocab.txt").read_text().splitlines()
    assert len(vocab_lines) == 31  # every piece but <unk>
    assert all(line == "▁" or not line.startswith("▁") for line in vocab_lines)
    again = load_tokenizer(tmp_path / "tok")
    assert again.encode("three one four") == tok.encode("three one four")
    assert load_tokenizer(tmp_path / "tok" / "tokenizer.model").vocab_size == 32


def test_tokenizer_round_trip_lowercases(tmp_path):
    tok = train_sentencepiece(_digit_texts(), tmp_path, vocab_size=40)
    ids = tok.encode("Seven EIGHT nine")
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == "seven eight nine"


def test_train_sentencepiece_vocab_too_large_soft_limit_and_hard_error(tmp_path, caplog):
    texts = ["one two", "three"] * 20
    with caplog.at_level("WARNING", logger="myna.text"):
        tok = train_sentencepiece(texts, tmp_path / "soft", vocab_size=500)
    assert tok.vocab_size < 500 and "fewer than the 500" in caplog.text
    with pytest.raises(ValueError, match="Vocabulary size too high"):
        train_sentencepiece(texts, tmp_path / "hard", vocab_size=500, hard_vocab_limit=True)
    with pytest.raises(ValueError, match="smaller than required_chars"):
        train_sentencepiece(texts, tmp_path / "tiny", vocab_size=4)


def test_load_tokenizer_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="no tokenizer.model"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="missing.model"):
        load_tokenizer(tmp_path / "missing.model")


@pytest.mark.parity
def test_nemo_tokenizer_dir_loads_and_matches_fixture_targets(nemo_fixtures, nemo_model):
    info = json.loads((nemo_fixtures / f"{nemo_model}_reference.json").read_text())
    tok = load_tokenizer(nemo_fixtures / "tokenizer")
    assert isinstance(tok, SentencePieceTokenizer) and tok.vocab_size == info["tokenizer_vocab_size"]
    ref = np.load(nemo_fixtures / f"{nemo_model}_reference.npz")
    for row, text in enumerate(info["target_texts"]):
        n = int(ref["target_len"][row])
        assert tok.encode(text) == ref["targets"][row, :n].tolist()
        assert tok.decode(ref["targets"][row, :n]) == text


@pytest.mark.parity
def test_train_sentencepiece_reproduces_nemo_create_spt_model(nemo_fixtures, tmp_path):
    index = json.loads((nemo_fixtures / "index.json").read_text())["tokenizer"]
    texts = (nemo_fixtures / index["corpus"]).read_text().splitlines()
    train_sentencepiece(texts, tmp_path, vocab_size=index["vocab_size"], lowercase=index["do_lower_case"])
    for name in ("tokenizer.vocab", "vocab.txt"):
        assert (tmp_path / name).read_text() == (nemo_fixtures / "tokenizer" / name).read_text()
