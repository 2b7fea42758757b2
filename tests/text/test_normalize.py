"""myna.text.normalize: one normalisation for reference and hypothesis; characters the tokenizer cannot write."""

import pytest

from myna.text import train_sentencepiece
from myna.text.normalize import ScoringNormalizer, unknown_characters


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = ["one two three four five six seven eight nine zero"] * 40
    return train_sentencepiece(texts, tmp_path_factory.mktemp("tok"), vocab_size=30)  # lower-casing (nmt_nfkc_cf)


def test_tokenizer_normalisation_lowercases_like_the_tokenizer(tokenizer):
    norm = ScoringNormalizer(tokenizer)
    assert norm("ONE  Two ＴＨＲＥＥ") == "one two three"  # NFKC full-width letters, case folded
    assert "lower-cased" in norm.describe()


def test_nemo_options_lowercase_and_punctuation():
    assert ScoringNormalizer(None, lowercase=True, remove_punctuation=True)("Hello, World! It's") == "hello world it's"
    assert ScoringNormalizer(None, remove_punctuation=True, punctuation_marks=".,")("a, b! c.") == "a b! c"
    assert ScoringNormalizer(None, separate_punctuation=True)("a,b") == "a , b"
    assert ScoringNormalizer(None).describe().endswith("none (texts compared as written)")


def test_unknown_characters_are_counted(tokenizer):
    counts = unknown_characters(tokenizer, ["one é two!", "THREE é 4"])
    assert dict(counts) == {"é": 2, "!": 1, "4": 1}
    assert not unknown_characters(tokenizer, ["ONE TWO"])  # upper case folds to known letters
