"""The command-line contract, end to end on a few bundled utterances: train, resume, evaluate, transcribe."""

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from myna.cli import main
from myna.interop.nemo import find_model_file

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "data" / "espeak_digits"


def _subset(src: Path, dst: Path, n: int) -> Path:
    lines = src.read_text().splitlines()[:n]
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row["audio_filepath"] = str(CORPUS / row["audio_filepath"])
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    train = _subset(CORPUS / "train.json", tmp / "train.json", 24)
    dev = _subset(CORPUS / "dev.json", tmp / "dev.json", 8)
    test = _subset(CORPUS / "test.json", tmp / "test_final.json", 4)
    exp = tmp / "exp"
    args = ["train", str(REPO / "conf" / "contextnet_rnnt_dummy.yaml"),
            f"model.train_ds.manifest_filepath={train}", f"model.validation_ds.manifest_filepath={dev}",
            f"model.test_ds.manifest_filepath={test}",
            f"exp_manager.exp_dir={exp}", "trainer.max_steps=3", "trainer.val_check_interval=3",
            "model.train_ds.batch_size=8", "model.tokenizer.vocab_size=24", "exp_manager.checkpoint_every_n_steps=2",
            "trainer.enable_progress_bar=false"]
    assert main(args) == 0
    return tmp, exp, args


def test_train_leaves_model_config_tokenizer_checkpoints_logs_and_curve(trained):
    _, exp, _ = trained
    for name in ["contextnet_rnnt_dummy.nemo", "config.yaml", "tokenizer/tokenizer.model", "checkpoints/last.ckpt",
                 "logs/version_0/metrics.csv", "learning_curve.png"]:
        assert (exp / name).is_file(), name
    assert (exp / "checkpoints" / "step2.ckpt").is_file()
    assert not list(exp.rglob("*.tmp"))


def test_rerun_resumes_from_last_checkpoint_and_ends_with_beam_test_evaluation(trained, caplog, capsys):
    _, exp, args = trained
    caplog.set_level("INFO")
    config_before = (exp / "config.yaml").read_text()
    # The same command again: the run is complete, nothing is rewritten.
    assert main(args) == 2
    assert "completed run (step 3 of trainer.max_steps=3)" in capsys.readouterr().err
    # A different config: stops and lists the changed keys, config.yaml untouched.
    assert main(args + ["trainer.max_steps=4", "model.optim.lr=1e-3"]) == 2
    err = capsys.readouterr().err
    assert "trainer.max_steps: 3 -> 4" in err and "model.optim.lr: 0.003 -> 0.001" in err and "+resume=true" in err
    assert (exp / "config.yaml").read_text() == config_before
    # The explicit choice continues that run with the new config.
    assert main(args[:-1] + ["trainer.max_steps=4", "trainer.enable_progress_bar=false", "+resume=true"]) == 0
    assert "resuming from step 3" in caplog.text
    assert re.search(r"^test .*test_final.json \(beam\): WER: \d+\.\d\d%", capsys.readouterr().out, re.M)
    import torch

    ckpt = torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4
    assert (exp / "logs" / "version_1" / "hparams.yaml").is_file()  # the resumed run logs apart,
    # and the first run's log is kept
    assert (exp / "logs" / "version_0" / "metrics.csv").is_file()


def test_evaluate_prints_wer_and_cer(trained, capsys):
    tmp, exp, _ = trained
    test = _subset(CORPUS / "test.json", tmp / "test.json", 6)
    out = tmp / "hyps.jsonl"
    assert main(["evaluate", "--model", str(exp / "contextnet_rnnt_dummy.nemo"), "--manifest", str(test),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^WER: \d+\.\d\d%$", printed, re.M)
    assert re.search(r"^CER: \d+\.\d\d%$", printed, re.M)
    assert len(out.read_text().splitlines()) == 6


def test_transcribe_prints_one_line_per_file(trained, capsys):
    _, exp, _ = trained
    rows = [json.loads(line) for line in (CORPUS / "test.json").read_text().splitlines()[:2]]
    files = [str(CORPUS / r["audio_filepath"]) for r in rows]
    assert main(["transcribe", "--model", str(exp / "contextnet_rnnt_dummy.nemo"), *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == files
    import myna

    # the Python call gives what the command prints; a run folder loads its final model
    assert [line.split("\t", 1)[1] for line in lines] == myna.load(exp).transcribe(files)


def test_transcribe_command_equals_the_python_call_for_every_fixture_model(nemo_fixtures, nemo_model, capsys):
    import myna

    wavs = [str(nemo_fixtures / "input_single.wav"), str(nemo_fixtures / "input_b2.wav")]
    assert main(["transcribe", "--model", str(nemo_fixtures / f"{nemo_model}.nemo"), *wavs]) == 0
    printed = [line.split("\t", 1) for line in capsys.readouterr().out.rstrip("\n").split("\n")]
    assert [path for path, _ in printed] == wavs
    assert [text for _, text in printed] == myna.load(nemo_fixtures / f"{nemo_model}.nemo").transcribe(wavs)


def _audio_batch(model, wavs):
    from myna.audio import load_audio
    from myna.models.base import pad_batch

    return pad_batch([load_audio(w, model.sample_rate) for w in wavs])


def test_trained_transducer_restores_in_nemo(trained, nemo_restores):
    # NeMo import and restore: ~20 s; runs only where nemo_toolkit is importable.
    import myna

    _, exp, _ = trained
    rows = [json.loads(line) for line in (CORPUS / "test.json").read_text().splitlines()[:2]]
    model = myna.load(exp)
    audio, lengths = _audio_batch(model, [CORPUS / r["audio_filepath"] for r in rows])
    assert nemo_restores(exp / "contextnet_rnnt_dummy.nemo", model, audio, lengths) == "EncDecRNNTBPEModel"


def test_broken_manifest_line_is_reported_with_file_and_line(trained, capsys, tmp_path):
    _, exp, _ = trained
    bad = tmp_path / "bad.json"
    good = (CORPUS / "test.json").read_text().splitlines()[0]
    bad.write_text(good + "\n{not json\n")
    assert main(["evaluate", "--model", str(exp / "contextnet_rnnt_dummy.nemo"), "--manifest", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: malformed JSON" in err


def test_unknown_override_fails_with_the_key(capsys):
    assert main(["train", str(REPO / "conf" / "contextnet_rnnt_dummy.yaml"), "model.train_ds.batchsize=3"]) == 2
    assert "model.train_ds.batchsize" in capsys.readouterr().err


def test_finetune_from_nemo_with_new_tokenizer_reports_and_saves_a_loadable_model(nemo_fixtures, tmp_path, caplog):
    import myna
    from myna.text import train_sentencepiece

    train = _subset(CORPUS / "train.json", tmp_path / "train.json", 8)
    texts = [json.loads(line)["text"] for line in train.read_text().splitlines()]
    train_sentencepiece(texts, tmp_path / "tok", vocab_size=20)
    exp = tmp_path / "exp"
    caplog.set_level("INFO")
    assert main(["train", str(REPO / "conf" / "finetune_transducer.yaml"),
                 f"init_from_nemo_model={nemo_fixtures / 'conformer_rnnt_bpe.nemo'}",
                 f"model.tokenizer.dir={tmp_path / 'tok'}", f"model.train_ds.manifest_filepath={train}",
                 f"exp_manager.exp_dir={exp}", "trainer.max_steps=2", "model.train_ds.batch_size=4",
                 "trainer.enable_progress_bar=false"]) == 0
    assert "shape mismatch: decoder.prediction.embed.weight" in caplog.text
    model = myna.load(exp / "finetuned_transducer.nemo")
    assert model.joint.num_classes_with_blank == model.tokenizer.vocab_size + 1
    source = myna.load(nemo_fixtures / "conformer_rnnt_bpe.nemo")  # the architecture is the pretrained one
    assert model.encoder.state_dict().keys() == source.encoder.state_dict().keys()
    assert model.encoder.layers[0].self_attn.linear_q.weight.shape == source.encoder.layers[0].self_attn.linear_q.weight.shape


# A CTC model and a hybrid one, trained for a few steps: the final test pass decodes with the
# strategy each supports ("beam" is the CTC prefix beam search for a CTC model), evaluate runs
# their strategies, and NeMo restores what `myna train` wrote.
HYBRID_HEAD = "{decoder: {_target_: nemo.collections.asr.modules.ConvASRDecoder}, ctc_loss_weight: 0.3}"
KIND_RUNS = {
    "ctc": ("conformer_ctc_small.yaml", ["model.encoder.d_model=32", "model.encoder.n_layers=1",
                                         "model.tokenizer.vocab_size=24"], "ctc_beam", "EncDecCTCModelBPE"),
    "hybrid": ("contextnet_rnnt_dummy.yaml", [f"++model.aux_ctc={HYBRID_HEAD}", "model.tokenizer.vocab_size=24",
                                              "model.decoding.final_strategy=ctc_greedy"],
               "ctc_greedy", "EncDecHybridRNNTCTCBPEModel"),
}


@pytest.fixture(scope="module", params=sorted(KIND_RUNS))
def kind_run(request, tmp_path_factory):
    recipe, overrides, final_strategy, nemo_class = KIND_RUNS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    train = _subset(CORPUS / "train.json", tmp / "train.json", 16)
    test = _subset(CORPUS / "test.json", tmp / "test.json", 3)
    exp = tmp / "exp"
    args = ["train", str(REPO / "conf" / recipe), f"model.train_ds.manifest_filepath={train}",
            f"model.test_ds.manifest_filepath={test}", f"exp_manager.exp_dir={exp}", "trainer.max_steps=2",
            "model.train_ds.batch_size=8", "trainer.enable_progress_bar=false", *overrides]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0
    return request.param, exp, test, final_strategy, nemo_class, printed.getvalue()


def test_training_run_of_each_kind_ends_with_its_final_test_pass(kind_run):
    kind, exp, test, final_strategy, _, printed = kind_run
    assert re.search(rf"^test .*test.json \({final_strategy}\): WER: \d+\.\d\d%", printed, re.M)
    import myna

    model = myna.load(exp)
    assert ("joint" in dict(model.named_children())) == (kind == "hybrid")


@pytest.mark.parametrize("decoding", ["greedy", "beam", "ctc_greedy", "ctc_beam", "modified_beam"])
def test_evaluate_runs_each_strategy_the_trained_model_supports(kind_run, decoding, capsys):
    kind, exp, test, _, _, _ = kind_run
    code = main(["evaluate", "--model", str(exp), "--manifest", str(test), "--decoding", decoding, "--beam-size", "2"])
    out, err = capsys.readouterr()
    if kind == "ctc" and decoding == "modified_beam":  # a Transducer search on a CTC model: a clear error
        assert code == 2 and "it can run ['ctc_greedy', 'ctc_beam']" in err
        return
    assert code == 0, err
    resolved = {"greedy": "ctc_greedy", "beam": "ctc_beam"}.get(decoding, decoding) if kind == "ctc" else decoding
    assert f"decoding: {resolved}" in out and re.search(r"^WER: \d+\.\d\d%$", out, re.M)


def test_trained_model_of_each_kind_restores_in_nemo(kind_run, nemo_restores):
    # NeMo import and restore: ~20 s; runs only where nemo_toolkit is importable.
    import myna

    _, exp, test, _, nemo_class, _ = kind_run
    model = myna.load(exp)
    audio, lengths = _audio_batch(model, [json.loads(line)["audio_filepath"] for line in test.read_text().splitlines()[:2]])
    assert nemo_restores(find_model_file(exp), model, audio, lengths) == nemo_class


def test_ctrl_c_writes_a_checkpoint_and_the_same_command_resumes_from_its_step(tmp_path, monkeypatch, caplog, capsys):
    import os
    import signal

    import torch

    from myna.training.module import ASRTask

    train = _subset(CORPUS / "train.json", tmp_path / "train.json", 16)
    exp = tmp_path / "exp"
    args = ["train", "contextnet_rnnt_dummy", f"model.train_ds.manifest_filepath={train}",
            f"exp_manager.exp_dir={exp}", "trainer.max_steps=5", "model.train_ds.batch_size=4",
            "model.tokenizer.vocab_size=24", "exp_manager.checkpoint_every_n_steps=100", "trainer.log_every_n_steps=1"]
    step = ASRTask.training_step

    def interrupted_step(self, batch, batch_idx):
        if self.global_step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the third step
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ASRTask, "training_step", interrupted_step)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "SIGINT: stopped at step 3" in err
    assert torch.load(exp / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    monkeypatch.setattr(ASRTask, "training_step", step)
    caplog.set_level("INFO")
    assert main(args) == 0
    assert "resuming from step 3" in caplog.text
    assert torch.load(exp / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 5
    out = capsys.readouterr().out
    assert "step 4/5 (80%)" in out and "step 5/5 (100%)" in out and "step 3/5" not in out  # plain lines off a tty


def test_version_recipes_and_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and re.match(r"myna \d+\.\d+", capsys.readouterr().out)
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^contextnet_rnnt_dummy\s+0\.5M params", out, re.M)
    assert re.search(r"^conformer_transducer_bpe_xlarge\s+6\d\d\.\dM params", out, re.M)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "example:" in help_text and "  myna train contextnet_rnnt_dummy \\\n" in help_text


def test_unknown_recipe_name_lists_the_installed_ones(capsys):
    assert main(["train", "no_such_recipe"]) == 2
    err = capsys.readouterr().err
    assert "recipe not found: no_such_recipe" in err and "contextnet_rnnt_dummy" in err


def test_options_take_dashes_and_underscores(tmp_path, monkeypatch):
    import myna.data.tarred as tarred

    seen = []
    monkeypatch.setattr(tarred, "write_tarred_dataset", lambda *a, **k: seen.append((a, k)) or [])
    for spelling in (["--manifest_path", "m.json", "--target_dir", "t", "--num_shards", "2"],
                     ["--manifest-path", "m.json", "--target-dir", "t", "--num-shards", "2"]):
        assert main(["data", "tar", *spelling]) == 0
    assert seen[0] == seen[1] and seen[0][0] == (["m.json"], "t", 2)


def test_transcribe_with_decoding_output_and_device(trained, tmp_path, capsys):
    _, exp, _ = trained
    rows = [json.loads(line) for line in (CORPUS / "test.json").read_text().splitlines()[:3]]
    files = [str(CORPUS / r["audio_filepath"]) for r in rows]
    model = str(exp / "contextnet_rnnt_dummy.nemo")
    assert main(["transcribe", "--model", model, "--decoding", "beam", "--beam_size", "2", "--batch-size", "2",
                 "--device", "cpu", "--output", str(tmp_path / "out.json"), *files]) == 0
    manifest = [json.loads(line) for line in (tmp_path / "out.json").read_text().splitlines()]
    assert [m["audio_filepath"] for m in manifest] == files and all("pred_text" in m and m["duration"] > 0
                                                                    for m in manifest)
    assert main(["transcribe", "--model", model, "--output", str(tmp_path / "out.jsonl"), *files]) == 0
    import myna

    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["text"] for x in lines] == myna.load(model).transcribe(files)  # greedy: the Python call's texts
    capsys.readouterr()
    assert main(["transcribe", "--model", model, "--device", "cuda:7", *files]) == 2 or __import__("torch").cuda.is_available()
