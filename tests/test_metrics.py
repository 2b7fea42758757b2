"""WER / CER."""

import pytest

from myna.metrics import error_rates, word_error_rate


def test_wer_counts_each_edit_type():
    rates = error_rates(["one two three four"], ["one too three four five"])
    assert (rates.substitutions, rates.insertions, rates.deletions) == (1, 1, 0)
    assert rates.wer == pytest.approx(2 / 4)


def test_empty_hypothesis_is_all_deletions_and_empty_reference_all_insertions():
    rates = error_rates(["one two", ""], ["", "three"])
    assert rates.deletions == 2 and rates.insertions == 1 and rates.reference_words == 2
    assert rates.wer == pytest.approx(3 / 2)


def test_perfect_transcripts_score_zero_and_whitespace_is_normalised():
    assert word_error_rate(["nine  eight"], [" nine eight "]) == 0.0
    assert error_rates(["abc"], ["abc"]).cer == 0.0


def test_cer_counts_characters():
    rates = error_rates(["abcd"], ["abed"])
    assert rates.cer == pytest.approx(1 / 4)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["a", "b"], ["a"])
