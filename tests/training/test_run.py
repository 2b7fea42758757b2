"""training/run.py: the final test pass decodes each model kind with every strategy it supports."""

import json
import re

import pytest
import soundfile as sf

import myna
from myna.config import load_config
from myna.training.run import _final_evaluation


@pytest.fixture(scope="module")
def fixture_manifest(nemo_fixtures, tmp_path_factory):
    """The fixture wav as a one-line manifest (the text is any reference: the WER is not checked)."""
    path = tmp_path_factory.mktemp("run") / "test.json"
    info = sf.info(nemo_fixtures / "input_single.wav")
    path.write_text(json.dumps({"audio_filepath": str(nemo_fixtures / "input_single.wav"),
                                "duration": info.frames / info.samplerate, "text": "the quick brown fox"}) + "\n")
    return path


def test_final_test_pass_runs_every_strategy_of_each_kind(nemo_fixtures, nemo_model, fixture_manifest, capsys):
    model = myna.load(nemo_fixtures / f"{nemo_model}.nemo")
    for strategy in model.decoding_strategies:
        cfg = load_config(None, [f"model.decoding.final_strategy={strategy}", "model.decoding.beam.beam_size=2",
                                 "trainer.enable_progress_bar=false"])
        _final_evaluation(model, cfg, [str(fixture_manifest)])
        printed = capsys.readouterr().out
        assert re.search(rf"^test .*test.json \({strategy}\): WER: \d+\.\d\d%", printed, re.M), printed


def test_final_test_pass_with_a_strategy_the_model_cannot_run_is_a_clear_error(nemo_fixtures, ctc_model,
                                                                             fixture_manifest):
    model = myna.load(nemo_fixtures / f"{ctc_model}.nemo")
    cfg = load_config(None, ["model.decoding.final_strategy=modified_beam"])
    with pytest.raises(ValueError, match=r"'modified_beam' is not supported by CTCModel; it can run \['ctc_greedy'"):
        _final_evaluation(model, cfg, [str(fixture_manifest)])


def test_default_final_strategy_beam_is_the_prefix_beam_search_on_a_ctc_model(nemo_fixtures, ctc_model,
                                                                              fixture_manifest, capsys):
    model = myna.load(nemo_fixtures / f"{ctc_model}.nemo")
    cfg = load_config(None, ["trainer.enable_progress_bar=false"])
    assert cfg.model.decoding.final_strategy == "beam"
    _final_evaluation(model, cfg, [str(fixture_manifest)])
    assert "(ctc_beam): WER" in capsys.readouterr().out
