"""Every shipped recipe builds, and its size matches the published one."""

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from myna.config import load_config
from myna.data.manifest import filter_entries, read_manifest
from myna.interop.adapter import build_model

CONF = Path(__file__).resolve().parents[1] / "conf"

# Published sizes (NeMo's model cards; the dummy and the small CTC model are myna's own sizes).
PUBLISHED_PARAMETERS = {
    "contextnet_rnnt_dummy": 0.5e6,
    "conformer_ctc_small": 1.6e6,
    "contextnet_rnnt": 144e6,
    "conformer_transducer_bpe_large": 120e6,
    "conformer_transducer_bpe_xlarge": 600e6,
}


class _VocabOnly:
    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_recipe_builds_on_meta_device_with_published_size(name):
    cfg = load_config(CONF / f"{name}.yaml")
    with torch.device("meta"):
        model = build_model(cfg.model, _VocabOnly(cfg.model.tokenizer.vocab_size))
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == pytest.approx(PUBLISHED_PARAMETERS[name], rel=0.05), f"{name}: {n_params / 1e6:.2f}M"


# wav2vec 2.0 (Baevski et al. 2020, table 1: BASE 95M, LARGE 317M); the Hourglass keeps Base's
# layers (naive resampling has no parameters), so its size is Base's.
PUBLISHED_WAV2VEC2 = {"wav2vec2_base": 95e6, "wav2vec2_base_hourglass": 95e6, "wav2vec2_large": 317e6}


@pytest.mark.parametrize("name", sorted(PUBLISHED_WAV2VEC2))
def test_wav2vec2_recipes_match_the_published_sizes_within_2_percent(name):
    cfg = load_config(CONF / f"{name}.yaml")
    with torch.device("meta"):
        model = build_model(cfg.model, None)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == pytest.approx(PUBLISHED_WAV2VEC2[name], rel=0.02), f"{name}: {n_params / 1e6:.2f}M"
    assert model.encoder.encoder.num_layers == (24 if "large" in name else 12)

def test_unknown_encoder_target_is_an_error_naming_it():
    cfg = load_config(CONF / "contextnet_rnnt_dummy.yaml", ["model.encoder._target_=my.FancyEncoder"])
    with pytest.raises(ValueError, match="my.FancyEncoder"):
        build_model(cfg.model, _VocabOnly(32))


def test_recipes_max_duration_filter_drops_and_counts_long_utterances(tmp_path, caplog):
    recipe = yaml.safe_load((CONF / "conformer_transducer_bpe_large.yaml").read_text())
    max_duration = recipe["model"]["train_ds"]["max_duration"]
    assert max_duration == 20.0
    manifest = tmp_path / "train.json"
    durations = [3.0, 19.9, 20.0, 20.5, 35.0]
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": d, "text": "x"}) + "\n"
                                for i, d in enumerate(durations)))
    with caplog.at_level(logging.WARNING, logger="myna.data"):
        kept, report = filter_entries(read_manifest(manifest), max_duration=max_duration, name="train_ds")
    assert [e.duration for e in kept] == [3.0, 19.9, 20.0]
    assert report.num_dropped == 2 and report.dropped == {"duration > 20.0 s": (2, 55.5)}
    assert "dropped 2 with duration > 20.0 s" in caplog.text


def test_nemo_ssl_recipes_build_with_nemo_shapes():
    """conformer_ssl.yaml as NeMo ships it (2 x 300 codevectors over 4 x 80 inputs, an MLM head over
    300^2 ids + blank) and the FastConformer variant (8-frame steps, linear targets, MLM inactive)."""
    shapes = {}
    for name in ("conformer_ssl", "fastconformer_ssl"):
        with torch.device("meta"):
            model = build_model(load_config(CONF / f"{name}.yaml").model, None)
        shapes[name] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ssl = shapes["conformer_ssl"]
    assert ssl["decoder_losses.contrastive.loss.quantizer.vars"] == (1, 300, 64)
    assert ssl["decoder_losses.contrastive.loss.quantizer.weight_proj.weight"] == (600, 320)
    assert ssl["decoder_losses.mlm.decoder.decoder_layers.0.weight"] == (90001, 512, 1)
    assert sum(1 for k in ssl if k.endswith("norm_out.weight")) == 18
    fast = shapes["fastconformer_ssl"]
    assert fast["decoder_losses.contrastive.loss.target_proj.weight"] == (128, 640)
    assert sum(1 for k in fast if k.endswith("norm_out.weight")) == 17


def test_tiny_ssl_recipe_trains_a_step_on_cpu():
    model = build_model(load_config(CONF / "conformer_ssl_tiny.yaml").model, None).train()
    torch.manual_seed(0)
    out = model(torch.randn(2, 12000) * 0.1, torch.tensor([12000, 9000]), step=0)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and {"loss_contrastive", "loss_mlm"} <= set(out)
