"""Every shipped recipe builds, and its size matches the published one."""

from pathlib import Path

import pytest
import torch

from myna.config import load_config
from myna.interop.adapter import build_model

CONF = Path(__file__).resolve().parents[1] / "conf"

# Published sizes (NeMo's model cards; the dummy is myna's prototyping size).
PUBLISHED_PARAMETERS = {
    "contextnet_rnnt_dummy": 0.5e6,
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


def test_unknown_encoder_target_is_an_error_naming_it():
    cfg = load_config(CONF / "contextnet_rnnt_dummy.yaml", ["model.encoder._target_=my.FancyEncoder"])
    with pytest.raises(ValueError, match="my.FancyEncoder"):
        build_model(cfg.model, _VocabOnly(32))
