"""decode() through the protocol each model kind implements: every strategy a Transducer, hybrid
and CTC model supports runs, the CTC names resolve for CTC-only models, and a strategy a model
cannot run is an error listing the ones it can."""

import numpy as np
import pytest
import torch

import myna
from myna.decoding import CTC_STRATEGIES, STRATEGIES, TRANSDUCER_STRATEGIES, decode, resolve_strategy


@pytest.fixture(scope="module")
def fixture_batch(nemo_fixtures):
    inputs = np.load(nemo_fixtures / "inputs.npz")
    return torch.from_numpy(inputs["batch"]), torch.from_numpy(inputs["batch_len"])


@pytest.fixture(scope="module")
def fixture_single(nemo_fixtures):
    inputs = np.load(nemo_fixtures / "inputs.npz")
    return torch.from_numpy(inputs["single"]), torch.from_numpy(inputs["single_len"])


def _encode(model, batch):
    audio, lengths = batch
    with torch.no_grad():
        return model.encoder(*model.featurize(audio, lengths))


def test_each_kind_lists_the_strategies_it_can_run(nemo_fixtures, nemo_model):
    model = myna.load(nemo_fixtures / f"{nemo_model}.nemo")
    has_joint, has_ctc = hasattr(model, "joint"), getattr(model, "ctc_decoder", None) is not None or not hasattr(model, "joint")
    expected = (TRANSDUCER_STRATEGIES if has_joint else ()) + (CTC_STRATEGIES if has_ctc else ())
    assert model.decoding_strategies == expected
    assert set(expected) <= set(STRATEGIES)


def test_every_supported_strategy_decodes(nemo_fixtures, nemo_model, fixture_single):
    model = myna.load(nemo_fixtures / f"{nemo_model}.nemo")
    encoded, lengths = _encode(model, fixture_single)
    greedy_texts = [h.text for h in model.decode(encoded, lengths)]
    for strategy in model.decoding_strategies:
        hyps = decode(model, encoded, lengths, strategy=strategy, beam_size=2)
        assert len(hyps) == encoded.size(0), strategy
        assert all(h.text == model.tokenizer.decode(h.tokens) for h in hyps), strategy
        assert all(0 <= t < model.blank_id for h in hyps for t in h.tokens), strategy
    # the model's own greedy decoding is the first strategy it lists
    first = model.decoding_strategies[0]
    assert [h.text for h in decode(model, encoded, lengths, strategy=first)] == greedy_texts


def test_ctc_greedy_of_a_hybrid_uses_its_ctc_head(nemo_fixtures, hybrid_model, fixture_batch):
    model = myna.load(nemo_fixtures / f"{hybrid_model}.nemo")
    encoded, lengths = _encode(model, fixture_batch)
    assert [h.tokens for h in decode(model, encoded, lengths, strategy="ctc_greedy")] == \
        [h.tokens for h in model.decode_ctc(encoded, lengths)]


@pytest.mark.parametrize("name, expected", [("greedy", "ctc_greedy"), ("greedy_batch", "ctc_greedy"),
                                            ("beam", "ctc_beam"), ("ctc_beam", "ctc_beam")])
def test_nemo_strategy_names_resolve_to_ctc_searches_for_a_ctc_model(nemo_fixtures, ctc_model, name, expected):
    model = myna.load(nemo_fixtures / f"{ctc_model}.nemo")
    assert resolve_strategy(model, name) == expected


def test_a_strategy_the_model_cannot_run_names_the_ones_it_can(nemo_fixtures, nemo_model, fixture_batch):
    model = myna.load(nemo_fixtures / f"{nemo_model}.nemo")
    encoded, lengths = _encode(model, fixture_batch)
    for strategy in [s for s in STRATEGIES if s not in model.decoding_strategies] + ["tsd"]:
        if strategy in ("greedy", "beam") and not hasattr(model, "joint"):
            continue  # these are the CTC searches' NeMo names for a CTC model
        with pytest.raises(ValueError) as err:
            decode(model, encoded, lengths, strategy=strategy)
        assert f"{strategy!r} is not supported by {type(model).__name__}" in str(err.value)
        assert f"it can run {list(model.decoding_strategies)}" in str(err.value)
