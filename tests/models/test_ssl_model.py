"""The NeMo-style SSL model on tiny configs: training passes, loss_list semantics, errors."""

import copy

import pytest
import torch

from myna.interop.adapter import build_model


def build_ssl_model(cfg):
    return build_model(cfg, None)

NEMO = "nemo.collections.asr."


def _config(**loss_list):
    cfg = {
        "target": NEMO + "models.ssl_models.SpeechEncDecSelfSupervisedModel",
        "preprocessor": {"_target_": NEMO + "modules.AudioToMelSpectrogramPreprocessor", "features": 16,
                         "n_fft": 512, "pad_to": 16},
        "spec_augment": {"_target_": NEMO + "modules.MaskedPatchAugmentation", "patch_size": 8, "mask_patches": 0.5},
        "encoder": {"_target_": NEMO + "modules.ConformerEncoder", "feat_in": 16, "n_layers": 2, "d_model": 16,
                    "n_heads": 2, "conv_kernel_size": 5, "subsampling_factor": 4},
        "loss_list": {
            "contrastive": {
                "decoder": {"_target_": NEMO + "modules.ConvASRDecoderReconstruction", "feat_in": 16,
                            "feat_hidden": 16, "feat_out": 8},
                "loss": {"_target_": NEMO + "losses.ContrastiveLoss", "in_dim": 16, "proj_dim": 8,
                         "combine_time_steps": 4, "quantized_targets": True, "codebook_size": 4, "num_groups": 2,
                         "num_negatives": 3},
            },
        },
    }
    for name, entry in loss_list.items():
        if entry is None:
            cfg["loss_list"].pop(name)
        else:
            cfg["loss_list"][name] = entry
    return cfg


def _mlm(**extra):
    return {"decoder": {"_target_": NEMO + "modules.ConvASRDecoder", "feat_in": 16, "num_classes": 16},
            "loss": {"_target_": NEMO + "losses.MLMLoss", "combine_time_steps": 4},
            "targets_from_loss": "contrastive", **extra}


def _batch(samples=8000):
    torch.manual_seed(0)
    return torch.randn(2, samples) * 0.1, torch.tensor([samples, samples * 4 // 5])


def test_training_pass_returns_each_loss_and_trains_every_part():
    model = build_ssl_model(_config(mlm=_mlm(loss_alpha=10.0), mlm_l0=_mlm(output_from_layer="layers.0",
                                                                              transpose_encoded=True))).train()
    out = model(*_batch(), step=3)
    assert {"loss", "loss_contrastive", "loss_mlm", "loss_mlm_l0", "accuracy", "prob_perplexity"} <= set(out)
    # The layer hook fires in training too (NeMo records layers only when asked).
    expected = out["loss_contrastive"] + 10.0 * out["loss_mlm"] + out["loss_mlm_l0"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    out["loss"].backward()
    for name in ("encoder.layers.0.feed_forward1.linear1.weight", "decoder_losses.mlm_l0.decoder.decoder_layers.0.weight",
                 "decoder_losses.contrastive.loss.quantizer.weight_proj.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_start_step_and_is_active_decide_which_losses_run():
    model = build_ssl_model(_config(mlm=_mlm(start_step=5), off=_mlm(is_active=False))).train()
    assert "loss_mlm" not in model(*_batch(), step=4)
    assert "loss_mlm" in model(*_batch(), step=5)
    model.eval()  # evaluation keeps the activity of the last training step
    out = model(*_batch(), step=0)
    assert "loss_mlm" in out and "loss_off" not in out


def test_set_num_updates_decays_the_gumbel_temperature():
    model = build_ssl_model(_config()).train()
    assert float(model(*_batch(), step=0)["temperature"]) == pytest.approx(2.0)
    assert float(model(*_batch(), step=100000)["temperature"]) == pytest.approx(max(2 * 0.999995 ** 100000, 0.5))


def test_same_step_draws_the_same_masks_and_negatives():
    model = build_ssl_model(_config()).eval()
    with torch.no_grad():
        assert float(model(*_batch(), step=7)["loss"]) == float(model(*_batch(), step=7)["loss"])


@pytest.mark.parametrize("pruned", [False, True])
def test_ctc_and_rnnt_losses_read_reduced_quantizer_ids(pruned):
    cfg = _config(ctc={"decoder": {"_target_": NEMO + "modules.ConvASRDecoder", "feat_in": 16, "num_classes": 16},
                       "loss": {"_target_": NEMO + "losses.CTCLossForSSL", "num_classes": 16},
                       "targets_from_loss": "contrastive"},
                  rnnt={"decoder": {"_target_": NEMO + "modules.RNNTDecoderJointSSL",
                                    "decoder": {"_target_": NEMO + "modules.RNNTDecoder",
                                                "prednet": {"pred_hidden": 8, "pred_rnn_layers": 1}},
                                    "joint": {"_target_": NEMO + "modules.RNNTJoint", "num_classes": 16,
                                              "jointnet": {"joint_hidden": 8, "activation": "relu"}}},
                        "loss": {"_target_": NEMO + "losses.RNNTLossForSSL", "num_classes": 16,
                                 **({"loss_name": "pruned", "s_range": 4} if pruned else {})},
                        "targets_from_loss": "contrastive"})
    cfg["loss_list"]["contrastive"]["loss"]["reduce_ids"] = True
    model = build_ssl_model(cfg).train()
    # 2 s: the reduced ids (one per run of equal ids) fit the frames; pruned RNN-T needs s_range
    # above the symbols a frame emits.
    out = model(*_batch(32000), step=1)
    assert torch.isfinite(out["loss_ctc"]) and torch.isfinite(out["loss_rnnt"]) and float(out["loss_rnnt"]) > 0
    out["loss"].backward()
    assert model.decoder_losses["rnnt"]["decoder"].joint.enc.weight.grad.abs().sum() > 0


def test_decoder_and_loss_form_uses_nemo_module_names():
    cfg = _config()
    entry = cfg.pop("loss_list")["contrastive"]
    cfg.update(decoder=entry["decoder"], loss=entry["loss"])
    model = build_ssl_model(cfg)
    assert any(k.startswith("decoder_ssl.decoder_layers.0") for k in model.state_dict())
    assert "loss.quantizer.vars" in model.state_dict()
    assert torch.isfinite(model.train()(*_batch(), step=0)["loss"])


@pytest.mark.parametrize("entry, message", [
    (_mlm(targets_from_loss="nope"), r"model.loss_list.mlm.targets_from_loss='nope' names no loss_list entry"),
    (_mlm(targets_from_loss="mlm"), r"model.loss_list.mlm.targets_from_loss='mlm' must name an earlier entry"),
    (_mlm(targets_from_loss=None), r"model.loss_list.mlm: MLMLoss needs targets"),
    (_mlm(output_from_layer="layers.9"), r"output_from_layer='layers.9' is not a module of the encoder"),
    (_mlm(los_alpha=2.0), r"model.loss_list.mlm.los_alpha: unknown key for the loss_list entry"),
])
def test_bad_loss_list_entries_name_the_key(entry, message):
    with pytest.raises(ValueError, match=message):
        build_ssl_model(_config(mlm=entry))


def test_unknown_loss_key_names_the_section_and_target():
    cfg = _config()
    cfg["loss_list"]["contrastive"]["loss"]["num_negative"] = 3
    with pytest.raises(ValueError, match=r"model.loss_list.contrastive.loss.num_negative: unknown key for "
                                         r"nemo.collections.asr.losses.ContrastiveLoss"):
        build_ssl_model(cfg)


def test_more_negatives_than_masked_steps_is_an_error_naming_the_value():
    cfg = _config()
    cfg["loss_list"]["contrastive"]["loss"]["num_negatives"] = 50
    model = build_ssl_model(cfg).train()
    with pytest.raises(ValueError, match=r"model.loss_list.contrastive.loss: .*num_negatives=50 is more than the "
                                         r"\d+ masked steps per utterance"):
        model(*_batch(), step=0)


def test_combine_time_steps_that_do_not_fit_the_encoder_are_an_error():
    cfg = _config()
    cfg["loss_list"]["contrastive"]["loss"]["combine_time_steps"] = 2
    with pytest.raises(ValueError, match="combine_time_steps=2"):
        build_ssl_model(cfg).train()(*_batch(), step=0)


def test_patches_that_split_a_step_give_unequal_masked_counts_and_an_error():
    cfg = _config()
    cfg["spec_augment"]["patch_size"] = 6  # not a multiple of combine_time_steps=4
    model = build_ssl_model(cfg).train()
    with pytest.raises(ValueError, match=r"same number of masked steps in every utterance|no decoder step"):
        for step in range(20):  # a draw may happen to align; most do not
            model(*_batch(), step=step)


def test_too_short_utterance_is_an_error_naming_the_row():
    model = build_ssl_model(_config()).train()
    with pytest.raises(ValueError, match=r"row 1: \d frames"):
        model(torch.randn(2, 8000), torch.tensor([8000, 1000]), step=0)


def test_feature_penalty_and_feature_dropouts_apply():
    cfg = copy.deepcopy(_config())
    cfg.update(feature_penalty=0.5, dropout_features=0.2, dropout_features_q=0.1)
    model = build_ssl_model(cfg).train()
    assert model.dropout_features.p == 0.2 and model.dropout_features_q.p == 0.1
    out = model(*_batch(), step=0)
    assert float(out["feature_penalty"]) > 0
    torch.testing.assert_close(out["loss"].detach(), out["loss_contrastive"] + out["feature_penalty"])
