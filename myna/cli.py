"""The ``myna`` command: train, evaluate, transcribe, tokenizer train, data prepare.

    myna train RECIPE [key=value ...]        (RECIPE: an installed recipe's name or a YAML file)
    myna pretrain RECIPE.yaml [key=value ...]      (self-supervised: wav2vec 2.0, NeMo SSL)
    myna recipes
    myna evaluate --model MODEL --manifest TEST.json [--batch-size 16] [--output hyps.jsonl]
    myna transcribe --model MODEL a.wav b.flac ... [--decoding beam] [--backend eager|compile|int8|onnx] [--output out.json]
    myna export-onnx --model MODEL --out-dir DIR
    myna average EXP_DIR --last 5 [--out averaged.nemo]
    myna data check MANIFEST [--fix-durations --out FIXED.json]
    myna tokenizer train --manifest TRAIN.json --vocab-size 128 --out-dir DIR
    myna data prepare CORPUS --source DIR --out-dir DIR [--workers N] [--download]
    myna data tar --manifest_path TRAIN.json --target_dir DIR --num_shards 64 [--buckets_num 4]
    myna data estimate-bins -b 30 TRAIN.json
    myna lm train --text TEXTS.txt --out lm.arpa [--order 3] [--unit word|token --tokenizer DIR]

Every option is accepted with dashes or with NeMo's underscores (``--manifest-path``, ``--manifest_path``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main"]


def _setup_logging(verbose: bool) -> None:
    from myna.training.console import setup_logging

    setup_logging(verbose)


class _Parser(argparse.ArgumentParser):
    """Accepts each long option with dashes and with underscores (NeMo's scripts use underscores)."""

    def add_argument(self, *names, **kwargs):
        spellings = list(names)
        for name in names:
            if name.startswith("--"):
                for other in ("--" + name[2:].replace("_", "-"), "--" + name[2:].replace("-", "_")):
                    if other not in spellings:
                        spellings.append(other)
        if len(spellings) > len(names) and "dest" not in kwargs and names[0].startswith("--"):
            kwargs["dest"] = names[0][2:].replace("-", "_")
        return super().add_argument(*spellings, **kwargs)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


class _Formatter(argparse.HelpFormatter):
    """Help that shows each option once, with dashes (the underscore twins are accepted, not listed)."""

    def _format_action_invocation(self, action):
        names = action.option_strings
        shown = [o for o in names if not ("_" in o and o.startswith("--") and o.replace("_", "-") in names)]
        if shown == names:
            return super()._format_action_invocation(action)
        action.option_strings = shown
        try:
            return super()._format_action_invocation(action)
        finally:
            action.option_strings = names


class _RawFormatter(_Formatter, argparse.RawDescriptionHelpFormatter):
    pass


_TRAIN_EPILOG = r"""example:
  myna train contextnet_rnnt_dummy \
    model.train_ds.manifest_filepath=train.json model.validation_ds.manifest_filepath=dev.json \
    exp_manager.exp_dir=exp/dummy trainer.max_steps=600

RECIPE is an installed recipe (`myna recipes` lists them) or a YAML file. Overrides follow Hydra:
key=value sets a key, ++key=value adds or sets, ~key deletes. A rerun into the same exp_dir resumes
from its last checkpoint; if the config differs it stops and lists the changes (+resume=true continues
with the new config). Ctrl-C writes a checkpoint and stops; the same command continues from it."""


def _cmd_train(args: argparse.Namespace) -> int:
    from myna.config import load_config
    from myna.training.interrupt import TrainingInterrupted
    from myna.training.run import train

    cfg = load_config(args.recipe, args.overrides)
    if args.command == "pretrain":
        from myna.interop.adapter import PRETRAINING_KINDS, model_kind

        if model_kind(cfg.model) not in PRETRAINING_KINDS:
            raise ValueError(f"{args.recipe}: not a pre-training recipe (model.target: myna.Wav2Vec2PreTrainingModel "
                             "or NeMo's SpeechEncDecSelfSupervisedModel); use myna train")
    try:
        model_path = train(cfg)
    except TrainingInterrupted as stop:
        print(f"myna train: {stop}", file=sys.stderr)
        return 130
    print(f"model: {model_path}")
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    from myna.recipes import describe, list_recipes

    rows = [describe(r) for r in list_recipes()]
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        size = "from its checkpoint" if r["parameters"] != r["parameters"] else f"{r['parameters'] / 1e6:.1f}M params"
        print(f"{r['name']:<{width}}  {size:>20}  {r['summary']}")
    print(f"\n({len(rows)} recipes in {rows[0]['path'].rsplit('/', 1)[0] if rows else '?'}; "
          "sizes with each recipe's vocab_size; `myna train NAME ...` trains one)")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from myna.data.check import BLOCKING_KINDS, check_manifests, write_fixed_manifest

    if args.fix_durations and not args.out:
        raise ValueError("--fix-durations needs --out FIXED.json (the manifest is not changed in place)")
    if args.out and len(args.manifest) != 1:
        raise ValueError("--out writes one manifest: give one MANIFEST with it")
    report = check_manifests(args.manifest, text_field=args.text_field, tolerance=args.tolerance,
                             workers=args.workers, max_listed=args.max_listed)
    print(report.summary(max_listed=args.max_listed))
    if args.out:
        manifest = str(args.manifest[0])
        fixes = report.fixes.get(manifest, {}) if args.fix_durations else {}
        drop = {int(p.where.rsplit(":", 1)[1]) for kind in ("missing file", "unreadable header", "empty audio")
                for p in report.examples.get(kind, [])} if args.drop_bad else set()
        if args.drop_bad and any(report.counts.get(k, 0) > args.max_listed
                                 for k in ("missing file", "unreadable header", "empty audio")):
            raise ValueError("--drop-bad: more bad entries than --max-listed; raise --max-listed")
        out = write_fixed_manifest(manifest, fixes, args.out, drop=drop)
        print(f"wrote {out}: {len(fixes)} duration(s) set from the audio"
              + (f", {len(drop)} bad entries left out" if drop else ""))
        remaining = {k: n for k, n in report.counts.items() if k in BLOCKING_KINDS}
        if args.fix_durations:
            remaining.pop("duration mismatch", None)
            remaining.pop("no duration", None)
        for kind in ("missing file", "unreadable header", "empty audio"):
            if args.drop_bad:
                remaining.pop(kind, None)
        return 1 if remaining else 0
    return 0 if not report.blocking(allow=[k for k in report.counts if k not in BLOCKING_KINDS]) else 1


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import myna
    from myna.decoding import resolve_strategy
    from myna.evaluate import evaluate_manifest

    if args.lm is None and args.lm_weight:
        raise ValueError(f"--lm-weight {args.lm_weight} given without --lm")
    from myna.text.normalize import ScoringNormalizer

    model = _with_backend(myna.load(args.model), args.backend)
    args.decoding = resolve_strategy(model, args.decoding)
    normalizer = ScoringNormalizer(model.tokenizer if args.normalize == "tokenizer" else None,
                                   lowercase=args.lowercase, remove_punctuation=args.remove_punctuation,
                                   punctuation_marks=args.punctuation_marks)
    result = evaluate_manifest(model, args.manifest, batch_size=args.batch_size, output=args.output,
                               strategy=args.decoding, beam_size=args.beam_size, lm=args.lm,
                               lm_weight=args.lm_weight, lm_unit=args.lm_unit,
                               score_norm=args.score_norm, normalizer=normalizer)
    print(result.normalization)
    if result.unknown_summary():
        print(result.unknown_summary())
    print(f"decoding: {args.decoding}" + (f" (beam {args.beam_size})" if "beam" in args.decoding else "")
          + (f", backend {args.backend}" if args.backend != "eager" else "")
          + (f" + LM {args.lm} (weight {args.lm_weight}, {args.lm_unit}-level)" if args.lm else ""))
    print(f"WER: {100 * result.rates.wer:.2f}%")
    print(f"CER: {100 * result.rates.cer:.2f}%")
    print(f"substitutions={result.rates.substitutions} insertions={result.rates.insertions} "
          f"deletions={result.rates.deletions} words={result.rates.reference_words} "
          f"utterances={result.num_utterances} RTFx={result.rtfx:.1f}")
    if result.skipped:
        print(f"not scored (bad audio): {len(result.skipped)} utterance(s): "
              + "; ".join(f"{utt}" for utt, _ in result.skipped[:10]) + (" ..." if len(result.skipped) > 10 else ""))
    return 0


def _with_backend(model, backend: str):
    """The model itself for ``eager``, else its :class:`myna.decoding.backends.InferenceModel`."""
    if backend == "eager":
        return model
    from myna.decoding.backends import with_backend

    return with_backend(model, backend)


def _cmd_transcribe(args: argparse.Namespace) -> int:
    import myna

    from myna.transcribe import pick_device, transcribe_files, write_transcripts

    device = pick_device(args.device)  # a wrong device fails before the model is read
    model = _with_backend(myna.load(args.model), args.backend)
    rows = transcribe_files(model, args.audio, strategy=args.decoding, beam_size=args.beam_size,
                            batch_size=args.batch_size, device=device)
    if args.output:
        out = write_transcripts(rows, args.output, args.output_format)
        print(f"{len(rows)} transcripts written to {out}")
    else:
        for row in rows:
            print(f"{row.audio_filepath}\t{row.text}")
    return 0


def _cmd_average(args: argparse.Namespace) -> int:
    from myna.training.averaging import select_checkpoints, write_averaged_nemo

    steps = None
    if args.steps is not None:
        try:
            steps = tuple(int(x) for x in args.steps.split(":"))
            assert len(steps) == 2
        except (ValueError, AssertionError):
            raise ValueError(f"--steps {args.steps!r}: expected START:END, e.g. 300:600") from None
    exp_dir = Path(args.exp_dir)
    paths = select_checkpoints(exp_dir / "checkpoints", last=args.last, steps=steps)
    out = write_averaged_nemo(exp_dir, paths, Path(args.out) if args.out else exp_dir / "averaged.nemo", ema=args.ema)
    print(f"averaged {len(paths)} checkpoints{' (EMA weights)' if args.ema else ''} "
          f"({', '.join(p.name for p in paths)}): {out}")
    return 0


def _cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from myna.data.manifest import read_manifest
    from myna.text import train_sentencepiece

    texts = [entry.text for manifest in args.manifest for entry in read_manifest(manifest, text_field=args.text_field)]
    tokenizer = train_sentencepiece(texts, args.out_dir, vocab_size=args.vocab_size, model_type=args.type,
                                    lowercase=not args.keep_case)
    print(f"tokenizer: {args.out_dir} ({tokenizer.vocab_size} pieces, from {len(texts)} transcripts)")
    return 0


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from myna.data.prepare.common import PrepareError
    from myna.data.prepare.download import DownloadError, UnsafeArchiveError
    from myna.sphere import SphereError

    corpus, source, out = args.corpus, args.source, args.out_dir
    try:
        if corpus == "fsdd":
            from myna.data.prepare.fsdd import prepare_fsdd

            written = prepare_fsdd(source, out)
        elif corpus == "librispeech":
            from myna.data.prepare.librispeech import OPENSLR_URL, prepare_librispeech

            written = prepare_librispeech(source, out, args.data_sets, args.workers, args.download,
                                          args.audio_format, args.mirror or OPENSLR_URL)
        elif corpus == "an4":
            from myna.data.prepare.an4 import AN4_URL, prepare_an4

            written = prepare_an4(source, out, args.workers, args.download, args.mirror or AN4_URL)
        elif corpus in ("aishell1", "aishell"):
            from myna.data.prepare.aishell import AISHELL1_URL, prepare_aishell1

            written = prepare_aishell1(source, out, args.workers, args.download,
                                       args.mirror or AISHELL1_URL)
        elif corpus == "aishell2":
            from myna.data.prepare.aishell import prepare_aishell2

            written = prepare_aishell2(source, out, args.workers)
        elif corpus == "common_voice":
            from myna.data.prepare.common_voice import prepare_common_voice

            written = prepare_common_voice(source, out, args.splits.split(","), args.workers,
                                           args.sample_rate, download_url=args.download_url,
                                           sha256=args.sha256)
        elif corpus == "fisher":
            from myna.data.prepare.fisher import prepare_fisher

            written = prepare_fisher(source, out, args.workers, args.min_slice_duration,
                                     args.keep_low_conf, args.remove_noises, args.noises_to_emoji)
        elif corpus == "hub5":
            from myna.data.prepare.hub5 import prepare_hub5

            written = prepare_hub5(source, out, args.workers, args.min_slice_duration)
        elif corpus == "tedlium":
            from myna.data.prepare.tedlium import prepare_tedlium

            written = prepare_tedlium(source, out, args.workers)
        elif corpus == "switchboard":
            from myna.data.prepare.switchboard import prepare_switchboard

            written = prepare_switchboard(source, out, args.workers, args.dev_utterances,
                                          args.remove_noises)
        else:
            raise SystemExit(f"unknown corpus {corpus!r}")
    except (PrepareError, DownloadError, UnsafeArchiveError, SphereError) as err:
        print(f"myna data prepare {corpus}: error: {err}", file=sys.stderr)
        return 2
    if args.download and corpus in ("fsdd", "aishell2", "fisher", "hub5", "tedlium", "switchboard"):
        print(f"note: --download is not available for {corpus} (not a free download)", file=sys.stderr)
    for path in (written.values() if isinstance(written, dict) else written):
        print(path)
    return 0


def _cmd_data_tar(args: argparse.Namespace) -> int:
    from myna.data.tarred import write_tarred_dataset

    reports = write_tarred_dataset(args.manifest_path, args.target_dir, args.num_shards,
                                   min_duration=args.min_duration, max_duration=args.max_duration,
                                   shuffle=args.shuffle, shuffle_seed=args.shuffle_seed,
                                   buckets_num=args.buckets_num, workers=args.workers, text_field=args.text_field)
    for report in reports:
        print(report)
    return 0


def _cmd_data_estimate_bins(args: argparse.Namespace) -> int:
    from myna.data.lhotse_io import estimate_duration_bins

    bins = estimate_duration_bins(args.manifest, args.buckets, num_examples=args.num_examples,
                                  min_duration=args.min_duration, max_duration=args.max_duration,
                                  method=args.method)
    print("Use the following options in your config:")
    print(f"num_buckets={len(bins) + 1}")
    print(f"bucket_duration_bins=[{','.join(str(b) for b in bins)}]")
    return 0


def _cmd_lm_train(args: argparse.Namespace) -> int:
    from myna.data.text_only import filter_by_words, read_text_lines, read_text_records
    from myna.decoding.lm_train import train_arpa

    records = []
    for path in args.text or []:
        records.extend(read_text_lines(path))
    for path in args.manifest or []:
        records.extend(read_text_records(path, text_field=args.text_field))
    if not records:
        raise ValueError("give the LM's text with --text (one text per line) and/or --manifest (JSON lines)")
    records, report = filter_by_words(records, args.min_words, args.max_words, name="lm train")
    tokenizer = None
    if args.tokenizer:
        if args.tokenizer.endswith(".nemo"):
            from myna.interop.nemo import load_nemo

            tokenizer = load_nemo(args.tokenizer).tokenizer
        else:
            from myna.text import load_tokenizer

            tokenizer = load_tokenizer(args.tokenizer)
    summary = train_arpa((r.text for r in records), args.out, order=args.order, unit=args.unit,
                         tokenizer=tokenizer, prune_threshold=args.prune)
    print(f"{summary} ({report})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    import myna

    parser = _Parser(prog="myna", description="Train, fine-tune and run speech recognisers.")
    parser.add_argument("--version", action="version", version=f"myna {myna.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also MYNA_DEBUG=1); errors are one line otherwise")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a recipe with NeMo-style overrides",
                       epilog=_TRAIN_EPILOG, formatter_class=_RawFormatter)
    p.add_argument("recipe", help="an installed recipe's name (see `myna recipes`) or a YAML file")
    p.add_argument("overrides", nargs="*", help="key=value, +key=value, ++key=value, ~key")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("pretrain", help="self-supervised pre-training (wav2vec 2.0, NeMo SSL) from a YAML "
                                        "recipe; the same trainer, overrides, checkpoints and resume as train")
    p.add_argument("recipe", help="YAML recipe (conf/wav2vec2_*.yaml, conf/conformer_ssl*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value, +key=value, ++key=value, ~key")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="WER/CER of a model on a manifest")
    p.add_argument("--model", required=True, help="model: a .nemo archive (NeMo's or myna's) or a myna run folder")
    p.add_argument("--manifest", required=True, help="NeMo JSON-lines manifest with reference text")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--output", help="write per-utterance hypotheses here (JSON lines)")
    p.add_argument("--decoding", default="greedy",
                   choices=["greedy", "modified_beam", "beam", "alsd", "ctc_greedy", "ctc_beam"],
                   help="search: batched greedy; beam (batched ALSD, several labels per frame: the beam search to "
                        "use); modified_beam (<= 1 label per frame: for models trained on that topology); alsd "
                        "(one utterance at a time); or the CTC head's; for a CTC model greedy/beam are "
                        "ctc_greedy/ctc_beam")
    p.add_argument("--backend", default="eager", choices=["eager", "compile", "int8", "onnx"],
                   help="run the networks eagerly, torch.compile'd, int8-quantized (linear/LSTM layers) or in "
                        "onnxruntime (the onnx extra)")
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--lm", help="ARPA n-gram for shallow fusion (beam strategies)")
    p.add_argument("--lm-weight", type=float, default=0.0, help="weight of the LM's ln-probabilities")
    p.add_argument("--score-norm", action="store_true",
                   help="rank beam hypotheses by score / length (NeMo's score_norm); off by default")
    p.add_argument("--lm-unit", default="word", choices=["word", "token"],
                   help="the LM's words are words (scored at '\u2581' boundaries) or tokenizer pieces")
    p.add_argument("--normalize", choices=["tokenizer", "none"], default="tokenizer",
                   help="normalise reference and hypothesis with the tokenizer's own rule (default: NFKC, and "
                        "lower-casing when the tokenizer folds case) or not at all")
    p.add_argument("--lowercase", action="store_true", help="also lower-case both (NeMo's do_lowercase)")
    p.add_argument("--remove-punctuation", action="store_true",
                   help="drop punctuation from both (NeMo's rm_punctuation)")
    p.add_argument("--punctuation-marks", default=None,
                   help="the marks --remove-punctuation drops (default: every Unicode punctuation but ')")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("transcribe", help="print one transcript per audio file (or write them to a file)")
    p.add_argument("--model", required=True, help="model: a .nemo archive (NeMo's or myna's) or a myna run folder")
    p.add_argument("--batch-size", type=int, default=8, help="files per forward pass")
    p.add_argument("--decoding", default="greedy", choices=["greedy", "modified_beam", "beam", "ctc_greedy", "ctc_beam"],
                   help="search (as evaluate --decoding)")
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... or auto (default cpu)")
    p.add_argument("--output", help="write the transcripts here: a NeMo manifest for .json (audio_filepath, "
                   "duration, pred_text), JSON lines otherwise (audio_filepath, text)")
    p.add_argument("--output-format", choices=["jsonl", "nemo"], default=None,
                   help="override the format chosen from --output's suffix")
    p.add_argument("--backend", default="eager", choices=["eager", "compile", "int8", "onnx"],
                   help="inference backend (see evaluate --backend)")
    p.add_argument("audio", nargs="+", help="audio files (any format soundfile reads)")
    p.set_defaults(func=_cmd_transcribe)

    p = sub.add_parser("recipes", help="list the installed recipes with their sizes")
    p.set_defaults(func=_cmd_recipes)

    def _cmd_export_onnx(args: argparse.Namespace) -> int:
        import myna
        from myna.decoding.onnx_export import export_onnx

        for path in export_onnx(myna.load(args.model), args.out_dir):
            print(f"ONNX graph: {path}")
        return 0

    p = sub.add_parser("export-onnx", help="ONNX graphs for onnxruntime: encoder, prediction network, joiner "
                       "(Transducer) or one graph (CTC); the featurizer stays in PyTorch")
    p.add_argument("--model", required=True, help="model file (.nemo archive, myna's or NeMo's) or run folder")
    p.add_argument("--out-dir", required=True, help="folder for the graphs and myna_onnx.json")
    p.set_defaults(func=_cmd_export_onnx)

    def _cmd_export_nemo(args: argparse.Namespace) -> int:
        from myna.interop.nemo import export_nemo_file

        print(f"NeMo model: {export_nemo_file(args.model, args.out)}")
        return 0

    p = sub.add_parser("export-nemo", help="write a .nemo that NeMo 3.0 restores (NeMo class and keys, tokenizer)")
    p.add_argument("--model", required=True, help="model file (.nemo archive, myna's or NeMo's)")
    p.add_argument("--out", required=True, help="output .nemo file")
    p.set_defaults(func=_cmd_export_nemo)

    p = sub.add_parser("average", help="average a run's last N (or a step range of) checkpoints into a .nemo "
                       "(icefall's checkpoint averaging)")
    p.add_argument("exp_dir", help="the run folder (exp_manager.exp_dir) with config.yaml and checkpoints/")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--last", type=int, help="average the last N step checkpoints")
    which.add_argument("--steps", help="average the step checkpoints with START <= step <= END, as START:END")
    p.add_argument("--out", help="output .nemo (default EXP_DIR/averaged.nemo)")
    p.add_argument("--ema", action="store_true", help="average the checkpoints' EMA weights (exp_manager.ema) "
                   "instead of the trained ones; with --last 1, the EMA of the last checkpoint")
    p.set_defaults(func=_cmd_average)

    p = sub.add_parser("tokenizer", help="tokenizer tools")
    tok = p.add_subparsers(dest="tokenizer_command", required=True)
    t = tok.add_parser("train", help="train a SentencePiece tokenizer from manifest text (NeMo's files)")
    t.add_argument("--manifest", action="append", required=True, help="repeat for several manifests")
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--out-dir", required=True)
    t.add_argument("--type", default="bpe", choices=["bpe", "unigram"])
    t.add_argument("--text-field", default="text")
    t.add_argument("--keep-case", action="store_true", help="do not lowercase the text")
    t.set_defaults(func=_cmd_tokenizer_train)

    p = sub.add_parser("data", help="data preparation")
    data = p.add_subparsers(dest="data_command", required=True)
    d = data.add_parser("prepare", help="NeMo manifests (and WAVs, vocab.txt) from a corpus folder",
                        description="Write NeMo manifests from a corpus as it is laid out on disk "
                        "(NeMo's scripts/dataset_processing behaviour; see README 'Preparing corpora').")
    d.add_argument("corpus", choices=["fsdd", "librispeech", "an4", "aishell1", "aishell", "aishell2",
                                      "common_voice", "fisher", "hub5", "tedlium", "switchboard"])
    d.add_argument("--source", required=True, help="the corpus folder (downloads go here)")
    d.add_argument("--out-dir", required=True, help="manifests, converted or sliced audio")
    d.add_argument("--workers", type=int, default=1, help="parallel processes")
    d.add_argument("--download", action="store_true",
                   help="librispeech, an4, aishell1: fetch (resuming, checksum-verified) and extract")
    d.add_argument("--mirror", help="download base URL instead of the corpus's own (OpenSLR mirror)")
    d.add_argument("--data-sets", default="dev_clean",
                   help="librispeech: comma list of sets, ALL or mini (default dev_clean)")
    d.add_argument("--audio-format", choices=["flac", "wav"], default="flac",
                   help="librispeech: use the FLAC files (default) or write NeMo's WAV copies")
    d.add_argument("--splits", default="test,dev,train", help="common_voice: tsv files to read")
    d.add_argument("--sample-rate", type=int, default=16000, help="common_voice: WAV rate")
    d.add_argument("--download-url", help="common_voice: the archive link from the dataset page")
    d.add_argument("--sha256", help="common_voice: the archive's published SHA-256")
    d.add_argument("--min-slice-duration", type=float, default=10.0,
                   help="fisher, hub5: concatenate utterances into slices of at least this (s)")
    d.add_argument("--keep-low-conf", action="store_true", help="fisher: keep '((' lines")
    d.add_argument("--remove-noises", action="store_true",
                   help="fisher, switchboard: drop noise tags such as [laughter]")
    d.add_argument("--noises-to-emoji", action="store_true", help="fisher: noise tags to emoji")
    d.add_argument("--dev-utterances", type=int, default=4000,
                   help="switchboard: dev = first whole calls holding this many segments")
    d.set_defaults(func=_cmd_data_prepare)
    d = data.add_parser("tar", help="write a NeMo tarred dataset (convert_to_tarred_audio_dataset)")
    d.add_argument("--manifest_path", required=True, action="append",
                   help="NeMo manifest (repeat to concatenate several)")
    d.add_argument("--target_dir", required=True, help="output folder")
    d.add_argument("--num_shards", type=int, required=True, help="tar shards (per bucket)")
    d.add_argument("--min_duration", type=float, default=None, help="drop shorter utterances (seconds)")
    d.add_argument("--max_duration", type=float, default=None, help="drop longer utterances (seconds)")
    d.add_argument("--shuffle", action="store_true", help="shuffle entries before sharding")
    d.add_argument("--shuffle_seed", type=int, default=None)
    d.add_argument("--buckets_num", type=int, default=1,
                   help="equal-width duration buckets, one dataset each under bucket1..N")
    d.add_argument("--workers", type=int, default=1, help="processes writing shards")
    d.add_argument("--text_field", default="text")
    d.set_defaults(func=_cmd_data_tar)
    d = data.add_parser("check", help="check manifests: files, headers, durations, texts (and fix durations)",
                        description="Check every entry: the audio file exists and its header decodes, the duration "
                        "agrees with the audio within --tolerance, the text is non-empty. Headers only, in "
                        "parallel. Exit status 1 when a problem that stops training is found.")
    d.add_argument("manifest", nargs="+", help="NeMo manifests")
    d.add_argument("--fix-durations", action="store_true",
                   help="with --out: write the manifest with absent or wrong durations set from the audio")
    d.add_argument("--drop-bad", action="store_true",
                   help="with --out: leave out entries whose file is missing, unreadable or empty")
    d.add_argument("--out", help="the repaired manifest (relative audio paths rewritten to stay valid)")
    d.add_argument("--tolerance", type=float, default=0.1, help="seconds a duration may be off (default 0.1)")
    d.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU, at most 16)")
    d.add_argument("--text-field", default="text")
    d.add_argument("--max-listed", type=int, default=10, help="offenders named per kind")
    d.set_defaults(func=_cmd_data_check)
    d = data.add_parser("estimate-bins", help="bucket_duration_bins for Lhotse dynamic bucketing")
    d.add_argument("manifest", help="a manifest, a comma list, or weighted [[a.json,0.7],[b.json,0.3]]")
    d.add_argument("-b", "--buckets", type=int, default=30, help="number of buckets")
    d.add_argument("-n", "--num_examples", type=int, default=None, help="use only this many utterances")
    d.add_argument("-l", "--min_duration", type=float, default=None)
    d.add_argument("-u", "--max_duration", type=float, default=None)
    d.add_argument("--method", choices=["duration", "padding"], default="duration",
                   help="duration: equal total duration per bucket (NeMo's); padding: least padding")
    d.set_defaults(func=_cmd_data_estimate_bins)

    p = sub.add_parser("lm", help="n-gram language models for shallow fusion")
    lm = p.add_subparsers(dest="lm_command", required=True)
    t = lm.add_parser("train", help="a Kneser-Ney n-gram ARPA from text (what evaluate --lm reads)",
                      description="Estimate a back-off n-gram with Kneser-Ney smoothing (kaldingram, SRILM's "
                      "-ukndiscount) from text-only data and write it as ARPA.")
    t.add_argument("--text", action="append", help="plain text, one utterance per line (repeat; path or URL)")
    t.add_argument("--manifest", action="append",
                   help="JSON lines with a text field: NeMo text-only records or audio manifests (repeat)")
    t.add_argument("--text-field", default="text")
    t.add_argument("--out", required=True, help="the ARPA file to write")
    t.add_argument("--order", type=int, default=3, help="n (default 3)")
    t.add_argument("--unit", choices=["word", "token"], default="word",
                   help="LM words are words, or the tokenizer's pieces (match evaluate --lm-unit)")
    t.add_argument("--tokenizer", help="the ASR model's tokenizer folder or .nemo: token unit, and word "
                   "spelling as the model writes it")
    t.add_argument("--prune", type=float, default=None, help="entropy-pruning threshold, e.g. 1e-8")
    t.add_argument("--min-words", type=int, default=None, help="drop texts with fewer words")
    t.add_argument("--max-words", type=int, default=None, help="drop texts with more words")
    t.set_defaults(func=_cmd_lm_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    from myna.cli_errors import run_reporting

    # Config, manifest, audio and checkpoint errors name their source: one line, no traceback.
    return run_reporting(args.func, args, command=args.command, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
