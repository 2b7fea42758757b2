"""``myna train`` / ``myna pretrain``: from a resolved config to a trained model file, logs and a
learning curve. A pre-training recipe (``model.target: myna.Wav2Vec2PreTrainingModel``) runs
through the same trainer with :mod:`myna.training.pretraining`'s task, checks and curve.

The run folder (``exp_manager.exp_dir``) holds:

- ``config.yaml``: the resolved config as trained,
- ``tokenizer/``: the tokenizer (trained from the training manifest when the recipe names none),
- ``checkpoints/``: Lightning checkpoints (``last.ckpt`` for resuming, one every
  ``exp_manager.checkpoint_every_n_steps`` steps), written atomically,
- ``logs/version_N/``: TensorBoard events and ``metrics.csv``, one folder per (resumed) run,
- ``learning_curve.png``: loss and validation WER per step,
- ``<name>.nemo``: the final model, which ``myna.load`` (given this file or the folder) and NeMo's
  ``ASRModel.restore_from`` read (see :mod:`myna.interop.nemo`).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from myna.config import save_config
from myna.data.check import preflight
from myna.data.manifest import manifest_paths, read_manifest
from myna.interop.adapter import PRETRAINING_KINDS, build_model, model_kind
from myna.interop.nemo import read_nemo, save_nemo, tokenizer_files
from myna.interop.tensor_files import check_tensor_file
from myna.text import load_tokenizer, train_sentencepiece
from myna.training.checkpoint_io import AtomicCheckpointIO
from myna.training.console import StepProgress, config_summary
from myna.training.datamodule import ASRDataModule, has_data
from myna.training.distributed import build_strategy, gathered_model, launch_rank, wait_for_file
from myna.training.finetune import init_from_checkpoint
from myna.training.guards import TrainingGuard, pop_guard_options
from myna.training.interrupt import CheckpointOnInterrupt, TrainingInterrupted
from myna.training.loader_position import LoaderPosition
from myna.training.module import ASRTask
from myna.training.plots import plot_learning_curve, plot_pretraining_curve
from myna.training.pretraining import PretrainingTask
from myna.training.rerun import RerunError, checkpoint_state_file, plan_resume, pop_resume_choice
from myna.training.state import StepSeeds

__all__ = ["train", "RerunError", "TrainingInterrupted"]

log = logging.getLogger("myna.train")


def _manifests(value) -> list[Path]:
    """``manifest_filepath`` as paths (none when unset), parsed by :func:`manifest_paths`."""
    return manifest_paths(value) if value else []


def _init_sources(cfg: DictConfig) -> list[dict]:
    """[{path, include, exclude}] from ``init_from_nemo_model`` / ``init_from_pretrained_model``."""
    sources = []
    for key in ("init_from_nemo_model", "init_from_pretrained_model"):
        value = cfg.get(key)
        if value is None:
            continue
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        if isinstance(value, str):
            sources.append({"path": value, "include": None, "exclude": None})
        elif isinstance(value, dict):
            for name, spec in value.items():
                if not isinstance(spec, dict) or "path" not in spec:
                    raise ValueError(f"{key}.{name} needs a 'path' (and optional include/exclude lists)")
                unknown = sorted(set(spec) - {"path", "include", "exclude"})
                if unknown:
                    raise ValueError(f"{key}.{name}: unknown key(s) {unknown}")
                sources.append({"path": spec["path"], "include": spec.get("include"), "exclude": spec.get("exclude")})
        else:
            raise ValueError(f"{key} must be a path or a mapping, got {value!r}")
    return sources


_ARCHITECTURE_SECTIONS = ("preprocessor", "encoder", "decoder", "joint", "aux_ctc")


_VOCABULARY_KEYS = ("vocab_size", "num_classes", "vocabulary")


def _without_vocabulary(section):
    """A config section with its vocabulary sizes and lists removed (nested too): the tokenizer
    in use decides them, which is how a new tokenizer changes the vocabulary."""
    if isinstance(section, dict):
        return {k: _without_vocabulary(v) for k, v in section.items() if k not in _VOCABULARY_KEYS}
    return section


def _adopt_pretrained_architecture(cfg: DictConfig, exp_dir: Path) -> None:
    """With an init source and no ``model.encoder`` in the recipe, the model sections (and, when
    the recipe names no tokenizer, the tokenizer) come from the first .nemo archive."""
    sources = _init_sources(cfg)
    if not sources or cfg.model.encoder:
        return
    path = Path(sources[0]["path"])
    if path.suffix != ".nemo":
        raise ValueError(f"{path}: the recipe has no model.encoder, so the architecture must come from a .nemo")
    archive = read_nemo(path)
    source = archive.myna_config or archive.config  # myna's own sections when the archive has them
    for section in _ARCHITECTURE_SECTIONS:
        if source.get(section) is not None:
            OmegaConf.update(cfg, f"model.{section}", _without_vocabulary(source[section]),
                             merge=False, force_add=True)
    log.info("architecture from %s (%s)", path, ", ".join(s for s in _ARCHITECTURE_SECTIONS if source.get(s)))
    if not cfg.model.tokenizer.dir:
        try:
            files = tokenizer_files(archive, path)
        except ValueError as err:
            raise ValueError(f"{err}; set model.tokenizer.dir") from None
        tok_dir = exp_dir / "tokenizer"
        if not (tok_dir / "tokenizer.model").is_file():  # other ranks find rank 0's copy
            with _atomic_dir(tok_dir) as tmp:
                for name, data in files.items():
                    (tmp / name).write_bytes(data)
        cfg.model.tokenizer.dir = str(tok_dir)


def _training_texts(cfg: DictConfig) -> list[str]:
    """The transcripts of ``model.train_ds`` (and its text-only data)."""
    texts = []
    for path in _manifests(cfg.model.train_ds.manifest_filepath):
        texts.extend(entry.text for entry in read_manifest(path, text_field=cfg.model.train_ds.text_field))
    text_data = cfg.model.train_ds.get("text_data")
    if text_data and text_data.get("manifest_filepath"):  # hybrid ASR-TTS: the text-only texts count too
        from myna.data.text_only import read_text_records

        texts.extend(r.text for r in read_text_records(text_data.manifest_filepath,
                                                        text_field=text_data.get("text_field") or "text"))
    return texts


def _report_unknown_characters(tokenizer, texts: list[str]) -> None:
    """Say once which characters of the training text the tokenizer turns into ``<unk>``."""
    from myna.text.normalize import describe_unknown, unknown_characters

    unknown = unknown_characters(tokenizer, texts)
    if unknown:
        log.warning("%d character(s) of the training text map to <unk> (the model learns <unk> for them): %s",
                    sum(unknown.values()), describe_unknown(unknown))


def _prepare_tokenizer(cfg: DictConfig, exp_dir: Path):
    tok_cfg = cfg.model.tokenizer
    if tok_cfg.dir:
        tokenizer = load_tokenizer(tok_cfg.dir)
        try:
            texts = _training_texts(cfg)
        except ValueError:  # bucketed or weighted manifest lists: the loaders read those, no report here
            texts = []
        _report_unknown_characters(tokenizer, texts)
        return tokenizer
    out_dir = exp_dir / "tokenizer"
    if tok_cfg.type == "char":  # Hugging Face's character vocabulary of the training text (<pad> = CTC blank)
        from myna.text.characters import CharacterTokenizer

        if not (out_dir / "vocab.json").is_file():
            texts = [e.text for path in _manifests(cfg.model.train_ds.manifest_filepath)
                     for e in read_manifest(path, text_field=cfg.model.train_ds.text_field)]
            if not texts:
                raise ValueError("model.tokenizer.dir is null and there is no training text to build characters from")
            CharacterTokenizer.from_texts(texts).save(out_dir)
        cfg.model.tokenizer.dir = str(out_dir)
        return CharacterTokenizer.from_folder(out_dir)
    if (out_dir / "tokenizer.model").is_file():
        log.info("reusing the tokenizer trained earlier in %s", out_dir)
        tokenizer = load_tokenizer(out_dir)
    else:
        if tok_cfg.type != "bpe":
            raise ValueError(f"model.tokenizer.type={tok_cfg.type!r}: only 'bpe' can be trained here")
        texts = _training_texts(cfg)
        if not texts:
            raise ValueError("model.tokenizer.dir is null and there is no training text to train one from")
        log.info("training a %d-piece BPE tokenizer on %d transcripts -> %s", tok_cfg.vocab_size, len(texts), out_dir)
        with _atomic_dir(out_dir) as tmp:  # other ranks wait for out_dir/tokenizer.model
            train_sentencepiece(texts, tmp, vocab_size=tok_cfg.vocab_size, model_type="bpe",
                                lowercase=bool(tok_cfg.lowercase))
        tokenizer = load_tokenizer(out_dir)
        _report_unknown_characters(tokenizer, texts)
    cfg.model.tokenizer.dir = str(out_dir)
    return tokenizer


class _atomic_dir:
    """Write a folder under a temporary name, then rename it into place (whole or not at all)."""

    def __init__(self, target: Path):
        self.target = target
        self.tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")

    def __enter__(self) -> Path:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, *exc) -> bool:
        if exc_type is None:
            if self.target.exists():  # an empty or partial folder from an interrupted run
                shutil.rmtree(self.target)
            os.replace(self.tmp, self.target)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def _next_log_version(logs: Path) -> str:
    taken = [int(p.name[8:]) for p in logs.glob("version_*") if p.name[8:].isdigit()]
    return f"version_{max(taken, default=-1) + 1}"


def _tensorboard_installed() -> bool:
    """TensorBoard is an optional extra (it brings grpcio and protobuf); Lightning's logger needs it."""
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


def _trainer_kwargs(cfg: DictConfig) -> dict:
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    if isinstance(trainer.get("val_check_interval"), int):
        # An integer interval counts optimizer steps across epochs.
        trainer["check_val_every_n_epoch"] = None
    return trainer


def _distributed_callbacks(cfg: DictConfig, exp_dir: Path) -> list:
    """The watchdog that names a lost rank, the optional EMA and the per-rank utterance log."""
    from myna.training.averaging import ema_callback
    from myna.training.utterance_log import UtteranceLog
    from myna.training.watchdog import RankWatchdog

    out = []
    if cfg.distributed.heartbeat_s:
        out.append(RankWatchdog(float(cfg.distributed.heartbeat_s), float(cfg.distributed.lost_after_s)))
    ema = ema_callback(OmegaConf.to_container(cfg.exp_manager.ema, resolve=True))
    if ema is not None:
        out.append(ema)
    if cfg.exp_manager.log_utterance_ids:
        out.append(UtteranceLog(exp_dir / "utterances"))
    return out


def _final_evaluation(model, cfg: DictConfig, manifests: list[str]) -> None:
    """Score the final model on ``model.test_ds`` with ``model.decoding.final_strategy`` (beam search
    by default; greedy is what validation uses during training)."""
    from myna.decoding import resolve_strategy
    from myna.evaluate import evaluate_manifest

    decoding = cfg.model.decoding
    strategy = resolve_strategy(model, decoding.final_strategy)  # "beam" on a CTC model: ctc_beam
    beam = decoding.beam
    for path in manifests:
        result = evaluate_manifest(model, path, batch_size=cfg.model.test_ds.batch_size,
                                   progress=bool(cfg.trainer.enable_progress_bar), strategy=strategy,
                                   beam_size=beam.beam_size, lm=beam.ngram_lm_model,
                                   lm_weight=beam.ngram_lm_alpha if beam.ngram_lm_model else 0.0,
                                   score_norm=beam.score_norm)
        print(f"test {path} ({strategy}): {result.rates.summary()}", flush=True)
        print(f"  {result.normalization}", flush=True)
        if result.unknown_summary():
            print(f"  {result.unknown_summary()}", flush=True)


def train(cfg: DictConfig) -> Path:
    """Train as ``cfg`` says; returns the path of the final model file.

    Runs in every process of a multi-process run (Lightning's launcher re-runs the command in each;
    ``torchrun`` and SLURM start them together): rank 0 trains the tokenizer and writes the run
    folder's files, the others wait for the tokenizer and build the same model; each rank builds
    its own loaders once the process group exists (:class:`ASRDataModule`).

    Raises:
        RerunError: ``exp_dir`` holds a run with another config, or a completed one (see
            :mod:`myna.training.rerun`).
        TrainingInterrupted: SIGINT/SIGTERM stopped training after writing ``last.ckpt``.
        ValueError: the pre-flight data check found problems (:mod:`myna.data.check`).
    """
    resume_choice = pop_resume_choice(cfg)  # +resume=true: continue despite config changes
    exp_dir = Path(cfg.exp_manager.exp_dir)
    preflight(cfg.model, cfg.data_check)
    exp_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    devices = cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else 1
    rank = launch_rank(devices_per_node=devices)
    _adopt_pretrained_architecture(cfg, exp_dir)  # before anything reads the model's kind
    if not has_data(cfg.model.train_ds, "train_ds"):
        raise ValueError("model.train_ds.manifest_filepath is required to train (or train_ds.text_data / input_cfg)")
    pretraining = model_kind(cfg.model) in PRETRAINING_KINDS
    if not rank.is_zero and not pretraining and not cfg.model.tokenizer.dir:
        wait_for_file(exp_dir / "tokenizer" / "tokenizer.model", timeout_s=float(cfg.distributed.timeout_s),
                      what="the tokenizer")
    plan = plan_resume(cfg, exp_dir, resume_choice)
    tokenizer = None if pretraining else _prepare_tokenizer(cfg, exp_dir)
    for section in ("train_ds", "validation_ds") if pretraining else ():
        if cfg.model[section].get("use_start_end_token"):  # NeMo's SSL configs set it; there is no text
            log.info("model.%s.use_start_end_token ignored: self-supervised training reads no text", section)
            cfg.model[section].use_start_end_token = False
    if rank.is_zero:
        save_config(cfg, exp_dir / "config.yaml")

    model = build_model(cfg.model, tokenizer)
    if plan.ckpt_path is None:  # a resumed run's weights come from its checkpoint
        for source in _init_sources(cfg):
            # A new tokenizer shows up here as named shape mismatches (embedding, joiner output).
            init_from_checkpoint(model, source["path"], include=source["include"], exclude=source["exclude"])
    log.info("%s", config_summary(cfg, exp_dir / "config.yaml", model, tokenizer))

    if not has_data(cfg.model.train_ds, "train_ds"):
        raise ValueError("model.train_ds.manifest_filepath is required to train")
    has_validation = has_data(cfg.model.validation_ds, "validation_ds")
    data = ASRDataModule(cfg.model.train_ds, cfg.model.validation_ds if has_validation else None, tokenizer,
                         seed=cfg.seed)

    trainer_kwargs = _trainer_kwargs(cfg)
    guard = TrainingGuard(**pop_guard_options(trainer_kwargs))
    max_steps = trainer_kwargs["max_steps"]
    # Without max_steps the schedule's length comes from the trainer once the loaders exist.
    max_steps = max_steps if max_steps is not None and max_steps > 0 else None
    optim = OmegaConf.to_container(cfg.model.optim, resolve=True)
    if pretraining:
        # checks the data module's loaders for too-short utterances when fitting starts
        task = PretrainingTask(model, optim, max_steps, model_cfg=cfg.model)
    else:
        task = ASRTask(model, optim, max_steps=max_steps, compute_eval_loss=bool(cfg.model.compute_eval_loss))
        task.guard = guard

    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    em = cfg.exp_manager
    loggers = []
    # Each run (and each resumed run) logs into its own logs/version_N, so history is kept.
    version = _next_log_version(exp_dir / "logs")
    if em.create_csv_logger:
        loggers.append(CSVLogger(exp_dir, name="logs", version=version))
    if em.create_tensorboard_logger:
        if _tensorboard_installed():
            loggers.append(TensorBoardLogger(exp_dir, name="logs", version=version, default_hp_metric=False))
        else:
            log.warning("no TensorBoard logs: tensorboard is not installed (pip install 'myna[tensorboard]'); "
                        "the metrics are in logs/%s/metrics.csv and learning_curve.png", version)
    if em.create_wandb_logger:
        from myna.training.wandb_logger import build_wandb_logger

        loggers.append(build_wandb_logger(cfg, exp_dir, version))
    ckpt_dir = exp_dir / "checkpoints"
    interrupt = CheckpointOnInterrupt(ckpt_dir / "last.ckpt")
    callbacks = [
        LoaderPosition(),  # the train loader's position in each checkpoint: exact resumption
        StepSeeds(cfg.seed), guard,  # per-step random streams; bad audio and non-finite batches skipped
        ModelCheckpoint(dirpath=ckpt_dir, filename="step{step}", auto_insert_metric_name=False,
                        every_n_train_steps=em.checkpoint_every_n_steps, save_top_k=-1, save_last=True),
        interrupt,
    ]
    callbacks.extend(_distributed_callbacks(cfg, exp_dir))
    trainer_kwargs["strategy"] = build_strategy(trainer_kwargs, cfg.distributed)
    # myna's own progress: global step / max steps, ETA, validation WER in %; plain lines off a terminal.
    if trainer_kwargs.pop("enable_progress_bar"):
        callbacks.append(StepProgress(max_steps, every_n_steps=trainer_kwargs["log_every_n_steps"]))
    if not has_validation:
        trainer_kwargs["limit_val_batches"] = 0
    # myna's samplers already shard by rank; Lightning must not wrap them in another sampler.
    trainer = L.Trainer(**trainer_kwargs, logger=loggers or False, callbacks=callbacks, enable_progress_bar=False,
                        enable_model_summary=False, plugins=[AtomicCheckpointIO()], default_root_dir=exp_dir,
                        use_distributed_sampler=False)
    if plan.ckpt_path:
        check_tensor_file(checkpoint_state_file(plan.ckpt_path))  # a truncated or unsafe last.ckpt: one line naming it
        for change in plan.changes or []:
            log.warning("+resume=true: continuing with %s", change)
        log.info("resuming from step %d (%s)", plan.step, plan.ckpt_path)
    trainer.fit(task, datamodule=data, ckpt_path=plan.ckpt_path)
    if em.create_wandb_logger:
        from myna.training.wandb_logger import finish_wandb

        finish_wandb(loggers)

    model_path = exp_dir / f"{cfg.name}.nemo"
    model = gathered_model(trainer, model, lambda: build_model(cfg.model, tokenizer))  # FSDP: from the shards
    if not trainer.is_global_zero:  # rank 0 writes the model, the curve and the test scores
        return model_path
    model_path = save_nemo(model, exp_dir / f"{cfg.name}.nemo", config=cfg)
    log.info("final model written to %s", model_path)
    metrics = sorted((exp_dir / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    if em.plot_learning_curve and metrics:
        png = (plot_pretraining_curve(metrics, exp_dir / "learning_curve.png", task.num_codevectors) if pretraining
               else plot_learning_curve(metrics, exp_dir / "learning_curve.png"))
        log.info("learning curve: %s", png)
    test_manifests = _manifests(cfg.model.test_ds.manifest_filepath)
    if test_manifests and not pretraining:
        _final_evaluation(model.eval(), cfg, test_manifests)
    return model_path
