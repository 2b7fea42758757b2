"""The NeMo-config adapter: one table of targets, unknown keys named per section kind, ignored keys
with reasons, fixed values, nested sections, and whole models built section by section."""

import copy

import pytest
import yaml

from myna.interop import adapter
from myna.interop.adapter import (
    AUX_CTC_KEYS,
    LOSS_KEYS,
    PREPROCESSOR,
    SPEC_AUGMENT,
    Component,
    Keys,
    build,
    build_model,
    check,
    component,
    model_kind,
    register,
    targets_of,
)
from myna.nn.conformer import ConformerEncoder

SMALL_CONFORMER = {"_target_": "nemo.collections.asr.modules.ConformerEncoder", "feat_in": 16, "n_layers": 1,
                   "d_model": 32}


class _Vocab:
    def __init__(self, vocab_size):
        self.vocab_size = vocab_size


def _fixture_model_config(nemo_fixtures, name):
    cfg = yaml.safe_load((nemo_fixtures / f"{name}_model_config.yaml").read_text())
    return {k: v for k, v in cfg.items() if k not in ("train_ds", "validation_ds", "test_ds", "optim")}


def _vocab_size(cfg):
    """The fixture's vocabulary size, from its own config."""
    head = cfg.get("joint") or cfg["decoder"]
    return len(head["vocabulary"])


# Every section kind, with the fixture that has it and a key inside it (nested ones included).
SECTIONS = [
    ("conformer_rnnt_bpe", ("preprocessor",)),
    ("conformer_rnnt_bpe", ("spec_augment",)),
    ("conformer_rnnt_bpe", ("encoder",)),
    ("contextnet_rnnt_bpe", ("encoder",)),
    ("contextnet_rnnt_bpe", ("encoder", "jasper", 0)),
    ("conformer_rnnt_bpe", ("decoder",)),
    ("conformer_rnnt_bpe", ("decoder", "prednet")),
    ("conformer_rnnt_bpe", ("joint",)),
    ("conformer_rnnt_bpe", ("joint", "jointnet")),
    ("conformer_rnnt_bpe", ("loss",)),
    ("conformer_ctc_bpe", ("decoder",)),
    ("fastconformer_hybrid_rnnt_ctc_bpe", ("aux_ctc",)),
    ("fastconformer_hybrid_rnnt_ctc_bpe", ("aux_ctc", "decoder")),
]


@pytest.mark.parametrize("name, path", SECTIONS, ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else v)
def test_unknown_key_in_each_section_kind_is_an_error_naming_it(nemo_fixtures, name, path):
    cfg = _fixture_model_config(nemo_fixtures, name)
    assert build_model(copy.deepcopy(cfg), _Vocab(_vocab_size(cfg))) is not None  # the fixture builds as it is
    section = cfg
    for part in path:
        section = section[part]
    section["bogus_key"] = 1
    dotted = "model." + ".".join(map(str, path)) + ".bogus_key"
    with pytest.raises(ValueError, match=dotted.replace(".", r"\.")) as err:
        build_model(cfg, _Vocab(_vocab_size(cfg)))
    assert "unknown key" in str(err.value)


def test_unknown_key_error_names_the_target_and_the_known_keys():
    with pytest.raises(ValueError) as err:
        build({**SMALL_CONFORMER, "bogus_key": 1}, "model.encoder", "encoder")
    message = str(err.value)
    assert "model.encoder.bogus_key" in message and SMALL_CONFORMER["_target_"] in message
    assert "d_model" in message and "sync_max_audio_length" in message  # known and ignored keys are listed


def test_short_and_nemo_names_build_the_same_module():
    short = build({**SMALL_CONFORMER, "_target_": "ConformerEncoder"}, "model.encoder", "encoder")
    full = build(SMALL_CONFORMER, "model.encoder", "encoder")
    assert isinstance(short, ConformerEncoder) and type(short) is type(full)
    assert short.state_dict().keys() == full.state_dict().keys()


def test_unknown_target_or_a_target_of_another_kind_is_an_error_listing_the_supported_ones():
    with pytest.raises(ValueError, match="my.FancyEncoder") as err:
        build({**SMALL_CONFORMER, "_target_": "my.FancyEncoder"}, "model.encoder", "encoder")
    assert "ConvASREncoder" in str(err.value)
    with pytest.raises(ValueError, match="model.decoder._target_"):
        build(SMALL_CONFORMER, "model.decoder", "rnnt_decoder", num_tokens=8)
    with pytest.raises(ValueError, match="model.encoder._target_ is missing"):
        build({k: v for k, v in SMALL_CONFORMER.items() if k != "_target_"}, "model.encoder", "encoder")


def test_ignored_keys_are_accepted_and_each_has_a_reason():
    encoder = build({**SMALL_CONFORMER, "use_pytorch_sdpa": True, "sync_max_audio_length": False,
                     "subsampling_conv_chunking_factor": -1, "global_tokens": 4}, "model.encoder", "encoder")
    assert encoder.d_model == 32
    for target in targets_of("encoder") + targets_of("rnnt_joint") + targets_of("spec_augment"):
        assert all(reason.strip() for reason in component(target).ignored.values())
    for keys in (LOSS_KEYS, AUX_CTC_KEYS):
        assert all(reason.strip() for reason in keys.ignored.values())


@pytest.mark.parametrize("kind, section, key, context", [
    ("encoder", {**SMALL_CONFORMER, "reduction": "pooling", "reduction_factor": 2}, "reduction_factor", {}),
    ("encoder", {**SMALL_CONFORMER, "conv_context_style": "dcc"}, "conv_context_style", {}),
    ("preprocessor", {"use_torchaudio": True}, "use_torchaudio", {}),
    ("spec_augment", {"rect_masks": 3}, "rect_masks", {}),
    ("rnnt_decoder", {"_target_": "RNNTDecoder", "prednet": {"pred_hidden": 8}, "normalization_mode": "layer"},
     "normalization_mode", {"num_tokens": 4}),
    ("rnnt_joint", {"_target_": "RNNTJoint", "jointnet": {"joint_hidden": 8}, "num_extra_outputs": 5},
     "num_extra_outputs", {"num_tokens": 4, "encoder_hidden": 8, "pred_hidden": 8}),
    ("ctc_decoder", {"_target_": "ConvASRDecoder", "add_blank": False}, "add_blank", {"num_tokens": 4, "encoder_dim": 8}),
])
def test_a_value_myna_does_not_implement_is_an_error_naming_the_key(kind, section, key, context):
    default = {"preprocessor": PREPROCESSOR.nemo_target, "spec_augment": SPEC_AUGMENT.nemo_target}.get(kind)
    with pytest.raises(ValueError, match=f"model.{kind}.{key}=.*not supported"):
        build(section, f"model.{kind}", kind, default_target=default, **context)


def test_preprocessor_and_spec_augment_default_their_target_and_reject_foreign_ones():
    assert build({}, "model.preprocessor", "preprocessor", default_target=PREPROCESSOR.nemo_target).n_mels == 64
    with pytest.raises(ValueError, match="model.preprocessor.windw"):
        build({"windw": "hann"}, "model.preprocessor", "preprocessor", default_target=PREPROCESSOR.nemo_target)
    with pytest.raises(ValueError, match="AudioToMFCCPreprocessor"):
        build({"_target_": "nemo.collections.asr.modules.AudioToMFCCPreprocessor"}, "model.preprocessor",
              "preprocessor")
    with pytest.raises(ValueError, match="SpecCutout"):
        build({"_target_": "nemo.collections.asr.modules.SpecCutout"}, "model.spec_augment", "spec_augment")
    with pytest.raises(ValueError, match="model.spec_augment.freq_mask"):
        build({"freq_mask": 2}, "model.spec_augment", "spec_augment", default_target=SPEC_AUGMENT.nemo_target)
    built = build({"freq_masks": 1, "use_numba_spec_augment": True, "rect_masks": 0}, "model.spec_augment",
                  "spec_augment", default_target=SPEC_AUGMENT.nemo_target)
    assert built.freq_masks == 1


def test_sizes_given_in_a_section_must_equal_the_ones_the_model_decides(nemo_fixtures):
    cfg = _fixture_model_config(nemo_fixtures, "conformer_rnnt_bpe")
    vocab = _vocab_size(cfg)
    with pytest.raises(ValueError, match=f"model.decoder.vocab_size={vocab} but the tokenizer gives {vocab + 1}"):
        build_model(cfg, _Vocab(vocab + 1))
    cfg["joint"]["jointnet"]["encoder_hidden"] += 1
    with pytest.raises(ValueError, match="model.joint.jointnet.encoder_hidden"):
        build_model(cfg, _Vocab(vocab))


def test_joint_extra_outputs_are_rejected_where_the_joint_is_built(nemo_fixtures):
    cfg = _fixture_model_config(nemo_fixtures, "conformer_rnnt_bpe")
    cfg["joint"]["num_extra_outputs"] = 5  # TDT durations: the joint and the model agree that this is unsupported
    with pytest.raises(ValueError, match="model.joint.num_extra_outputs=5"):
        build_model(cfg, _Vocab(_vocab_size(cfg)))
    cfg["joint"]["num_extra_outputs"] = 0
    model = build_model(cfg, _Vocab(_vocab_size(cfg)))
    assert model.joint.num_classes_with_blank == _vocab_size(cfg) + 1 == model.blank_id + 1


def test_loss_section_takes_myna_and_nemo_keys_and_rejects_other_nemo_losses(nemo_fixtures):
    cfg = _fixture_model_config(nemo_fixtures, "contextnet_rnnt_bpe")  # NeMo's loss section, FastEmit on
    assert build_model(cfg, _Vocab(_vocab_size(cfg))).loss_config.name == "full"
    cfg["loss"] = {"name": "pruned", "s_range": 3}
    assert build_model(cfg, _Vocab(_vocab_size(cfg))).loss_config.s_range == 3
    cfg["loss"] = {"loss_name": "tdt"}
    with pytest.raises(ValueError, match="model.loss.loss_name='tdt'"):
        build_model(cfg, _Vocab(_vocab_size(cfg)))


def test_model_kind_follows_the_sections_and_checks_the_declared_class(nemo_fixtures):
    kinds = {name: model_kind(_fixture_model_config(nemo_fixtures, name))
             for name in ("conformer_rnnt_bpe", "fastconformer_hybrid_rnnt_ctc_bpe", "conformer_ctc_bpe")}
    assert kinds == {"conformer_rnnt_bpe": "rnnt", "fastconformer_hybrid_rnnt_ctc_bpe": "hybrid",
                     "conformer_ctc_bpe": "ctc"}
    cfg = _fixture_model_config(nemo_fixtures, "conformer_ctc_bpe")
    cfg["target"] = "nemo.collections.asr.models.EncDecRNNTBPEModel"
    with pytest.raises(ValueError, match="builds a rnnt model, but the sections describe a ctc model"):
        model_kind(cfg)
    cfg["target"] = "nemo.collections.asr.models.SpeakerModel"
    with pytest.raises(ValueError, match="SpeakerModel"):
        model_kind(cfg)


def test_registering_a_target_takes_one_call_and_checks_its_keys_and_nested_sections(monkeypatch):
    monkeypatch.setattr(adapter, "_REGISTRY", dict(adapter._REGISTRY))  # the table is left as it was

    class Toy:
        def __init__(self, width: int, head: dict, *, num_tokens: int):
            self.width, self.head, self.num_tokens = width, head, num_tokens

    entry = register(Component(kind="toy_head", targets=("example.ToyHead",), build=Toy,
                               nested={"head": Keys(used=("size",))}, ignored={"log": "logging only"}))
    built = build({"_target_": "example.ToyHead", "width": 3, "head": {"size": 2}, "log": True},
                  "model.toy", "toy_head", num_tokens=7)
    assert (built.width, built.head, built.num_tokens) == (3, {"size": 2}, 7)
    assert entry.keys.used == ("width", "head")  # the keyword-only context is not a config key
    with pytest.raises(ValueError, match=r"model\.toy\.head\.depth"):
        build({"_target_": "example.ToyHead", "width": 3, "head": {"depth": 2}}, "model.toy", "toy_head", num_tokens=7)
    with pytest.raises(ValueError, match="registered twice"):
        register(entry)


def test_check_reports_missing_required_keys():
    with pytest.raises(ValueError, match=r"model\.aux_ctc .*missing key\(s\) \['decoder'\]"):
        check({"ctc_loss_weight": 0.3}, AUX_CTC_KEYS, "model.aux_ctc", "the hybrid model's CTC head")


@pytest.mark.parametrize("joint_keys, expected", [
    ({"fuse_loss_wer": True, "fused_batch_size": 4}, 4),
    ({"fused_batch_size": 2}, 2),  # no fuse_loss_wer key: on
    ({"fuse_loss_wer": False, "fused_batch_size": 4}, 0),  # NeMo ignores the size then, so does myna
])
def test_build_model_reads_joint_fused_batch_size(nemo_fixtures, transducer_model, joint_keys, expected):
    cfg = _fixture_model_config(nemo_fixtures, transducer_model)
    cfg["joint"] = {k: v for k, v in cfg["joint"].items() if k not in ("fuse_loss_wer", "fused_batch_size")}
    cfg["joint"].update(joint_keys)
    model = build_model(cfg, _Vocab(_vocab_size(cfg)))
    assert model.fused_batch_size == expected
