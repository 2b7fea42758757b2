"""fairseq / NVIDIA DLE checkpoints: options read without unpickling objects, keys translated."""

import argparse
import json

import pytest
import torch
from omegaconf import OmegaConf

import myna
from myna.interop.adapter import build_model
from myna.interop.fairseq import (FairseqFormatError, fairseq_to_myna, parse_conv_feature_layers,
                                  read_checkpoint)

TINY_ARGS = {"encoder_embed_dim": 32, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_embed_dim": 64,
             "conv_feature_layers": "[(16,10,5)]+[(16,3,2)]*4+[(16,2,2)]*2", "conv_pos": 8, "conv_pos_groups": 4,
             "latent_vars": 8, "latent_groups": 2, "final_dim": 16, "num_negatives": 5, "quantize_targets": True}


class Booby:
    """Unpickling an instance would run __setstate__; the restricted reader must never call it."""

    def __setstate__(self, state):
        raise AssertionError("an arbitrary object was unpickled")


def _fairseq_state():
    """A myna model's weights under fairseq's names (the reverse of the importer's table)."""
    args = dict(TINY_ARGS)
    cfg, _, _ = fairseq_to_myna(args, {})
    model = build_model(cfg, None)
    inverse = {}
    for key, value in model.state_dict().items():
        k = key.replace("encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g")
        k = k.replace("encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v")
        k = k.replace("encoder.encoder.pos_conv_embed.conv.", "encoder.pos_conv.0.")
        k = k.replace("encoder.feature_projection.projection.", "post_extract_proj.")
        k = k.replace("encoder.feature_projection.layer_norm.", "layer_norm.")
        k = k.replace("encoder.masked_spec_embed", "mask_emb").replace("project_hid.", "final_proj.")
        k = k.replace(".conv.weight", ".0.weight").replace("conv_layers.0.layer_norm.", "conv_layers.0.2.")
        k = k.replace("encoder.feature_extractor.", "feature_extractor.").replace("encoder.encoder.", "encoder.")
        k = k.replace(".attention.", ".self_attn.").replace(".feed_forward.intermediate_dense.", ".fc1.")
        k = k.replace(".feed_forward.output_dense.", ".fc2.")
        if ".layers." in k:
            k = k.replace(".layer_norm.", ".self_attn_layer_norm.")
        inverse[k] = value
    return model, inverse


def test_parse_conv_feature_layers_without_eval():
    assert parse_conv_feature_layers("[(512,10,5)]+[(512,3,2)]*4+[(512,2,2)]*2") == \
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    for bad in ("__import__('os')", "[(1,2)]", "[(1,2,3)]*x"):
        with pytest.raises(FairseqFormatError, match="conv_feature_layers"):
            parse_conv_feature_layers(bad)


@pytest.mark.parametrize("form", ["namespace", "hydra"])
def test_checkpoint_options_are_read_without_unpickling_objects(tmp_path, form):
    model, state = _fairseq_state()
    if form == "namespace":
        payload = {"args": argparse.Namespace(**TINY_ARGS, booby=Booby()), "model": state}
    else:
        payload = {"cfg": OmegaConf.create({"model": {**TINY_ARGS, "_name": "wav2vec2"}}), "model": state,
                   "extra_state": Booby()}
    path = tmp_path / "checkpoint.pt"
    torch.save(payload, path)
    args, weights = read_checkpoint(path)
    assert args["encoder_embed_dim"] == 32 and args["conv_feature_layers"] == TINY_ARGS["conv_feature_layers"]
    loaded = myna.load(path)
    audio = torch.randn(1, 6000)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.encoder(audio, torch.tensor([6000]))[0], model.encoder(audio, torch.tensor([6000]))[0])


def test_fused_qkv_and_finetuned_prefixes(tmp_path):
    model, state = _fairseq_state()
    fused = {}
    for key, value in state.items():
        if ".self_attn.q_proj." in key:
            kind = key.rsplit(".", 1)[1]
            prefix = key.split(".self_attn.")[0]
            parts = [state[f"{prefix}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
            fused[f"{prefix}.self_attn.qkv.{kind}"] = torch.cat(parts)
        elif ".self_attn.k_proj." in key or ".self_attn.v_proj." in key:
            continue
        else:
            fused[key] = value
    finetuned = {f"w2v_encoder.w2v_model.{k}": v for k, v in fused.items() if not k.startswith(("quantizer", "project_q", "final_proj"))}
    finetuned["w2v_encoder.proj.weight"] = torch.zeros(5, 32)
    path = tmp_path / "finetuned.pt"
    torch.save({"model": finetuned}, path)
    (tmp_path / "finetuned_config.json").write_text(json.dumps({"args": {"w2v_args": {"model": TINY_ARGS}}}))
    loaded = myna.load(path)
    assert loaded.quantizer is None
    assert torch.equal(loaded.state_dict()["encoder.encoder.layers.1.attention.v_proj.weight"],
                       model.state_dict()["encoder.encoder.layers.1.attention.v_proj.weight"])


def test_unsupported_options_and_missing_config_are_named(tmp_path):
    with pytest.raises(FairseqFormatError, match="quantize_input"):
        fairseq_to_myna({**TINY_ARGS, "quantize_input": True}, {})
    with pytest.raises(FairseqFormatError, match="weights with no myna counterpart"):
        fairseq_to_myna(TINY_ARGS, {"decoder.embed_tokens.weight": torch.zeros(1)})
    torch.save({"model": {"mask_emb": torch.zeros(4)}}, tmp_path / "bare.pt")
    with pytest.raises(FairseqFormatError, match="bare_config.json"):
        read_checkpoint(tmp_path / "bare.pt")
