"""Character vocabularies in Hugging Face's vocab.json form."""

import json

import pytest

from myna.text import CharacterTokenizer, load_tokenizer


def test_round_trip_and_hf_decoding_rules(tmp_path):
    tok = CharacterTokenizer.from_texts(["one two", "three"])
    assert tok.pieces[:5] == ["<pad>", "<s>", "</s>", "<unk>", "|"] and tok.blank_id == 0
    ids = tok.encode("one x")
    assert ids[3] == tok.vocab["|"] and ids[4] == tok.vocab["<unk>"]
    assert tok.decode(tok.encode("two three")) == "two three"
    # pads (CTC blanks) vanish, the delimiter becomes a space, ends are stripped
    assert tok.decode([4, 0, tok.vocab["o"], 0, 4]) == "o"
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharacterTokenizer) and again.vocab == tok.vocab


def test_do_lower_case_upper_cases_input_and_lower_cases_output(tmp_path):
    vocab = {"<pad>": 0, "|": 1, "<unk>": 2, "A": 3, "B": 4}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    tok = CharacterTokenizer.from_folder(tmp_path)
    assert tok.encode("ab a") == [3, 4, 1, 3]
    assert tok.decode([3, 1, 4]) == "a b"


def test_bad_vocabularies_are_named(tmp_path):
    with pytest.raises(ValueError, match="without gaps"):
        CharacterTokenizer({"<pad>": 0, "|": 2})
    with pytest.raises(ValueError, match="pad_token"):
        CharacterTokenizer({"a": 0, "|": 1})
    (tmp_path / "vocab.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CharacterTokenizer.from_folder(tmp_path)
