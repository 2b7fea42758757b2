"""``myna pretrain`` end to end, then the pre-trained encoder fine-tuned by ``myna train`` into CTC
and Transducer models (``init_from_pretrained_model`` with ``include: [encoder]``)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import myna
from myna.cli import main

CONF = Path(__file__).resolve().parents[2] / "conf"

# A 1-layer encoder of 32 (conv 16 x 7): a few seconds per run on a CPU.
ENCODER = ["model.encoder.hidden_size=32", "model.encoder.num_layers=1", "model.encoder.num_heads=4",
           "model.encoder.intermediate_size=64", "model.encoder.conv_dim=[16,16,16,16,16,16,16]",
           "model.encoder.pos_conv_kernel=8", "model.encoder.pos_conv_groups=4"]
RUN = ["trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "trainer.val_check_interval=2",
       "model.train_ds.batch_size=2", "model.validation_ds.batch_size=2", "exp_manager.checkpoint_every_n_steps=2"]


@pytest.fixture(scope="module")
def audio_manifest(tmp_path_factory):
    """Four 16 kHz noise clips of 0.4-0.55 s with digit texts."""
    root = tmp_path_factory.mktemp("w2v_audio")
    rng = np.random.default_rng(0)
    lines = []
    for i, text in enumerate(["one", "two", "one two", "three"]):
        samples = 6400 + 800 * i
        sf.write(root / f"{i}.wav", (0.1 * rng.standard_normal(samples)).astype(np.float32), 16000, subtype="PCM_16")
        lines.append(json.dumps({"audio_filepath": str(root / f"{i}.wav"), "duration": samples / 16000, "text": text}))
    (root / "m.json").write_text("\n".join(lines) + "\n")
    # the same audio unlabelled: pre-training reads no text
    (root / "audio_only.json").write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "text"})
                                                  + "\n" for line in lines))
    return root / "m.json"


@pytest.fixture(scope="module")
def pretrained(audio_manifest, tmp_path_factory):
    """A 2-step ``myna pretrain`` run folder, then resumed to 3 steps."""
    exp = tmp_path_factory.mktemp("w2v_pretrain")
    args = ["pretrain", str(CONF / "wav2vec2_tiny.yaml"), *ENCODER, *RUN, "model.quantizer.vq_dim=16", "model.final_dim=16",
            "model.contrastive.num_negatives=4",
            f"model.train_ds.manifest_filepath={audio_manifest.parent / 'audio_only.json'}",
            f"model.validation_ds.manifest_filepath={audio_manifest}", f"exp_manager.exp_dir={exp}"]
    assert main([*args, "trainer.max_steps=2"]) == 0
    first = myna.load(exp)
    assert main([*args, "trainer.max_steps=3", "+resume=true"]) == 0  # continues from last.ckpt
    return exp, first


def test_pretrain_writes_curve_checkpoints_and_a_loadable_model(pretrained):
    exp, first = pretrained
    assert (exp / "learning_curve.png").stat().st_size > 10_000
    assert (exp / "checkpoints" / "last.ckpt").is_file()
    header = (exp / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("train_accuracy", "train_prob_perplexity", "train_temperature", "train_num_masked", "val_accuracy"):
        assert key in header, key
    resumed = (exp / "logs" / "version_1" / "metrics.csv").read_text().splitlines()
    steps = {int(line.split(",")[header.index("step")]) for line in resumed[1:] if line}
    assert steps and min(steps) >= 2  # the second run started where the first stopped
    model = myna.load(exp)
    assert type(model).__name__ == "Wav2Vec2PreTrainingModel" and not model.training
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, first.state_dict()[k])]
    assert changed  # the third step trained


def test_pretrain_refuses_a_supervised_recipe(capsys):
    assert main(["pretrain", str(CONF / "wav2vec2_tiny_ctc.yaml")]) != 0
    assert "not a pre-training recipe" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", ["wav2vec2_tiny_ctc", "wav2vec2_tiny_rnnt"])
def test_pretrained_encoder_initialises_ctc_and_transducer_fine_tuning(recipe, pretrained, audio_manifest, tmp_path,
                                                                       caplog):
    exp, _ = pretrained
    caplog.set_level("INFO", logger="myna.finetune")
    out = tmp_path / recipe
    assert main(["train", str(CONF / f"{recipe}.yaml"), *ENCODER, *RUN, "trainer.max_steps=1", "model.optim.lr=0.0",
                 "model.encoder.mask_time_prob=0.0", "model.encoder.mask_feature_prob=0.0",
                 f"init_from_pretrained_model.w2v.path={exp}", "init_from_pretrained_model.w2v.include=[encoder]",
                 f"model.train_ds.manifest_filepath={audio_manifest}", f"exp_manager.exp_dir={out}",
                 "model.decoder.feat_in=32" if "ctc" in recipe else "model.decoding.greedy.max_symbols=3"]) == 0
    assert "tensors loaded" in caplog.text
    source, tuned = myna.load(exp).state_dict(), myna.load(out).state_dict()
    encoder = [k for k in source if k.startswith("encoder.")]
    assert encoder and all(torch.equal(source[k], tuned[k]) for k in encoder)  # lr 0: the encoder as pre-trained
    model = myna.load(out)
    assert model.tokenizer.pieces[:5] == ["<pad>", "<s>", "</s>", "<unk>", "|"]  # the character vocabulary
    texts = model.transcribe([str(audio_manifest.parent / "0.wav")])
    assert len(texts) == 1 and isinstance(texts[0], str)
