"""Who am I in a multi-process run, before and after the process group exists.

Lightning (``trainer.devices`` / ``trainer.num_nodes`` with its own launcher), ``torchrun``
(one node or several) and SLURM (``srun``) each describe a process differently. After the
process group exists, the trainer's ``global_rank`` / ``world_size`` are the truth and every
loader is built from them (:mod:`myna.training.datamodule`). Before it exists, :func:`launch_rank`
reads the same facts from the launcher's environment, for the little work one process must do
first (training the tokenizer, writing ``config.yaml``) while the others wait for its result
(:func:`wait_for_file`).

>>> rank = launch_rank()          # 0 in a single-process run
>>> if rank.is_zero: tokenizer = train_tokenizer(...)
>>> else: wait_for_file(tok_dir / "tokenizer.model", timeout_s=600)
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["LaunchRank", "launch_rank", "wait_for_file", "describe_layout", "build_strategy", "gathered_model"]

log = logging.getLogger("myna.train")

# SLURM job names under which Lightning does not treat the job as a SLURM-managed run (an
# interactive shell inside an allocation): there Lightning launches the processes itself.
_INTERACTIVE_SLURM_NAMES = ("bash", "interactive")


@dataclass(frozen=True)
class LaunchRank:
    """A process's place as its launcher set it up.

    Attributes:
        rank: global rank (0 for the process that writes shared files).
        world_size: processes in the run, when the launcher says (else 1; Lightning's own
            launcher sets it only in the processes it starts).
        launcher: ``torchrun``, ``slurm``, ``lightning`` (a process Lightning started, or the
            first process of a node) or ``single``.
    """

    rank: int
    world_size: int
    launcher: str

    @property
    def is_zero(self) -> bool:
        return self.rank == 0


def launch_rank(env: Mapping[str, str] | None = None, devices_per_node: int = 1) -> LaunchRank:
    """This process's global rank from the launcher's environment (no process group needed).

    Precedence follows Lightning's cluster environments: ``torchrun`` (``RANK``, ``WORLD_SIZE``,
    with ``TORCHELASTIC_RUN_ID``/``GROUP_RANK``), SLURM (``SLURM_PROCID``, ``SLURM_NTASKS`` unless
    the job is an interactive shell), then Lightning's own launcher (``NODE_RANK`` and
    ``LOCAL_RANK``, absent in the process a user started, which is local rank 0).

    Args:
        env: the environment (``os.environ`` by default).
        devices_per_node: ``trainer.devices`` as an int, to turn a node and local rank into a
            global rank under Lightning's launcher.
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchRank(int(env["RANK"]), int(env["WORLD_SIZE"]), "torchrun")
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env and \
            env.get("SLURM_JOB_NAME", "") not in _INTERACTIVE_SLURM_NAMES:
        return LaunchRank(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), "slurm")
    node, local = int(env.get("NODE_RANK", 0)), int(env.get("LOCAL_RANK", 0))
    if "NODE_RANK" in env or "LOCAL_RANK" in env:
        return LaunchRank(node * max(devices_per_node, 1) + local, int(env.get("WORLD_SIZE", 1)), "lightning")
    return LaunchRank(0, 1, "single")


def wait_for_file(path: Path, timeout_s: float, what: str = "", poll_s: float = 0.2) -> None:
    """Wait until ``path`` exists (written by rank 0, which writes it atomically).

    Raises:
        TimeoutError: naming the file and what was waited for, after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for rank 0 to write {path}{f' ({what})' if what else ''}; "
                               f"is exp_manager.exp_dir on a file system every node shares?")
        time.sleep(poll_s)


def describe_layout(trainer: Any) -> str:
    """One line: the processes of this run as the trainer sees them (after setup)."""
    env = type(getattr(trainer.strategy, "cluster_environment", None)).__name__
    return (f"rank {trainer.global_rank} of {trainer.world_size} (node {trainer.node_rank} of {trainer.num_nodes}, "
            f"local rank {trainer.local_rank}; {env})")


def build_strategy(trainer_cfg: Mapping[str, Any], dist_cfg: Mapping[str, Any]) -> Any:
    """``trainer.strategy`` as Lightning takes it, with myna's settings for the named ones.

    - ``ddp`` (and ``auto`` with several devices or nodes): Lightning's DDPStrategy with
      ``distributed.timeout_s`` as the collective timeout;
    - ``fsdp``: Lightning's FSDPStrategy sharding each encoder layer (Conformer, ContextNet
      blocks), the prediction network and the joint, with ``distributed.fsdp``'s sharding strategy,
      checkpoint type (``sharded``: one file per rank in a folder; ``full``: one file) and CPU
      offload;
    - anything else (``ddp_spawn``, ``ddp_find_unused_parameters_true``, an object): as given.
    """
    from datetime import timedelta

    name = trainer_cfg.get("strategy", "auto")
    devices, nodes = trainer_cfg.get("devices", 1), int(trainer_cfg.get("num_nodes", 1) or 1)
    several = nodes > 1 or (isinstance(devices, int) and devices > 1) or devices == -1 or \
        (isinstance(devices, (list, tuple)) and len(devices) > 1)
    timeout = timedelta(seconds=float(dist_cfg.get("timeout_s", 1800)))
    if name == "ddp" or (name == "auto" and several):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(timeout=timeout)
    if name == "fsdp":
        fsdp = dict(dist_cfg.get("fsdp") or {})
        unknown = sorted(set(fsdp) - {"sharding_strategy", "state_dict_type", "cpu_offload"})
        if unknown:
            raise ValueError(f"distributed.fsdp: unknown key(s) {unknown}")
        # Lightning refuses its own FSDPStrategy without a GPU; torch's FSDP runs on CPU processes too
        # (gloo), which is how this is tested.
        return _fsdp_on_any_device()(timeout=timeout, auto_wrap_policy=_fsdp_wrapped_classes(),
                            sharding_strategy=fsdp.get("sharding_strategy", "FULL_SHARD"),
                            state_dict_type=fsdp.get("state_dict_type", "sharded"),
                            cpu_offload=bool(fsdp.get("cpu_offload", False)))
    return name


RANK_OPTIMIZER_FILE = "optimizer.rank{}.pt"


def _fsdp_on_any_device() -> type:
    import torch
    from lightning.pytorch.strategies import FSDPStrategy

    class FSDPOnAnyDevice(FSDPStrategy):
        """Lightning's FSDPStrategy, allowed on CPU processes (gloo) as well, with myna's sharded
        checkpoints.

        On CPU, torch's FSDP needs the CPU named as its device (it otherwise looks for an
        accelerator). A sharded checkpoint (``state_dict_type: sharded``) is a folder: the model's
        shards in torch's distributed-checkpoint format (``myna average`` and a resume on another
        world size read them), Lightning's ``meta.pt``, and one ``optimizer.rank<R>.pt`` per rank
        with that rank's own optimizer state as the optimizer keeps it (no gathering or
        re-sharding, so any optimizer's state fits, bitsandbytes' 8-bit AdamW included: its
        per-block absmax and quantile maps are not parameter-shaped, which torch's
        ``FSDP.optim_state_dict`` requires). The folder is written under a temporary name and
        renamed into place once every rank has written its part.
        """

        def _setup_model(self, model: Any) -> Any:
            from torch.distributed.fsdp import FullyShardedDataParallel

            if self.root_device.type != "cpu" or any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
                return super()._setup_model(model)
            return FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                            mixed_precision=self.mixed_precision_config,
                                            sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"),
                                            **self.kwargs)

        def optimizer_state(self, optimizer: Any) -> Any:
            inner = getattr(optimizer, "_optimizer", optimizer)
            if self._state_dict_type == "sharded":
                return inner.state_dict()  # this rank's shard of the state, as is (saved per rank)
            try:
                return super().optimizer_state(optimizer)
            except RuntimeError as err:
                if type(inner).__module__.startswith("bitsandbytes"):
                    raise ValueError(
                        f"distributed.fsdp.state_dict_type=full cannot checkpoint {type(inner).__name__}'s state: "
                        f"torch's FSDP.optim_state_dict expects every tensor of an optimizer state to have its "
                        f"parameter's shape, and bitsandbytes keeps per-block absmax and a 256-entry quantile map "
                        f"beside the 8-bit moments ({err}). Use distributed.fsdp.state_dict_type=sharded "
                        f"(the default: one optimizer file per rank)") from None
                raise

        def save_checkpoint(self, checkpoint: dict, filepath: Any, storage_options: Any = None) -> None:
            if self._state_dict_type != "sharded":
                return super().save_checkpoint(checkpoint, filepath, storage_options)
            import shutil

            final = Path(self.broadcast(str(filepath)))
            tmp = final.with_name(f".{final.name}.tmp")
            if self.global_rank == 0:  # left by a run that stopped while writing
                shutil.rmtree(tmp, ignore_errors=True)
            self.barrier("myna_ckpt_start")
            optimizer_states = checkpoint.pop("optimizer_states", [])
            super().save_checkpoint(checkpoint, tmp, storage_options)  # model shards (collective) + meta.pt
            from myna.training.checkpoint_io import atomic_torch_save

            atomic_torch_save({"world_size": self.world_size, "rank": self.global_rank,
                               "optimizer_states": optimizer_states}, tmp / RANK_OPTIMIZER_FILE.format(self.global_rank))
            self.barrier("myna_ckpt_written")
            if self.global_rank == 0:
                _replace_folder(tmp, final)
            self.barrier("myna_ckpt_renamed")

        def load_checkpoint(self, checkpoint_path: Any, weights_only: Any = None) -> Any:
            path = Path(self.broadcast(str(checkpoint_path)))
            if not (path.is_dir() and (path / RANK_OPTIMIZER_FILE.format(0)).is_file()):
                return super().load_checkpoint(checkpoint_path, weights_only)  # Lightning's own layouts
            from lightning.fabric.strategies.fsdp import _distributed_checkpoint_load, _get_sharded_state_dict_context
            from lightning.pytorch.trainer.states import TrainerFn

            saved_ranks = len(list(path.glob(RANK_OPTIMIZER_FILE.format("*"))))
            fitting = self.lightning_module.trainer.state.fn == TrainerFn.FITTING and self.optimizers
            if fitting and saved_ranks != self.world_size:
                raise ValueError(
                    f"{path}: written by {saved_ranks} FSDP ranks, this run has {self.world_size}; each rank's "
                    f"optimizer state is its own shard, so resume with {saved_ranks} processes (or start a new run "
                    f"from its weights: myna average EXP_DIR --steps N:N writes them as a .nemo for "
                    f"init_from_nemo_model)")
            with _get_sharded_state_dict_context(self.model):
                module_state = {"model": self.model.state_dict()}
                _distributed_checkpoint_load(module_state, path)
                self.model.load_state_dict(module_state["model"], strict=self.lightning_module.strict_loading)
            if fitting:
                own = torch.load(path / RANK_OPTIMIZER_FILE.format(self.global_rank), map_location=self.root_device,
                                 weights_only=True)
                if own.get("world_size") != self.world_size or len(own["optimizer_states"]) != len(self.optimizers):
                    raise ValueError(f"{path}: optimizer file of rank {self.global_rank} was written by a run with "
                                     f"{own.get('world_size')} ranks and {len(own['optimizer_states'])} optimizer(s)")
                for optimizer, state in zip(self.optimizers, own["optimizer_states"]):
                    optimizer.load_state_dict(state)
            return torch.load(path / "meta.pt", weights_only=weights_only)

    return FSDPOnAnyDevice


def _replace_folder(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target``: renames only, so ``target`` is never a half-written
    folder (between the two renames it is briefly absent; the previous one is then ``.<name>.old``)."""
    import shutil

    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.is_dir():
        os.replace(target, old)
    elif target.exists():
        target.unlink()
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _fsdp_wrapped_classes() -> set[type]:
    """Modules FSDP shards as units: each one's parameters are gathered only while it runs."""
    from myna.nn.conformer import ConformerLayer
    from myna.nn.contextnet import ContextNetBlock
    from myna.nn.prediction import RNNTPredictionNetwork

    return {ConformerLayer, ContextNetBlock, RNNTPredictionNetwork}


def gathered_model(trainer: Any, model: Any, rebuild: Any) -> Any:
    """The trained model whole on rank 0 (None on the other ranks), for the final ``.nemo``.

    Under FSDP each rank holds a shard of every parameter: the full state dict is gathered to
    rank 0 (a collective, so every rank calls this) and loaded into ``rebuild()``, a fresh
    model of the same architecture. Otherwise every rank holds the whole model already.
    """
    from lightning.pytorch.strategies import FSDPStrategy

    if not isinstance(trainer.strategy, FSDPStrategy):
        return model if trainer.is_global_zero else None
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    wrapped = trainer.strategy.model
    # Training is over: its gradients and optimizer state go before the full weights are gathered.
    wrapped.zero_grad(set_to_none=True)
    for optimizer in trainer.strategy.optimizers:
        optimizer.state.clear()
    on_accelerator = trainer.strategy.root_device.type != "cpu"  # offloading CPU tensors to the CPU crashes
    with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT,
                              FullStateDictConfig(offload_to_cpu=on_accelerator, rank0_only=True)):
        state = wrapped.state_dict()
    if not trainer.is_global_zero:
        return None
    weights = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    del state
    whole = _model_holding(weights, rebuild)
    return whole


def _model_holding(weights: dict, rebuild: Any) -> Any:
    """``rebuild()``'s model with ``weights`` as its parameters and buffers: built with its
    parameters on the meta device (buffers as usual, for those kept outside the state dict), then
    given the gathered tensors themselves, so the weights are not held twice.

    Raises:
        RuntimeError: naming the keys, when ``weights`` does not fit the model.
    """
    with _parameters_on_meta():
        whole = rebuild()
    missing, unexpected = whole.load_state_dict(weights, strict=False, assign=True)
    if missing or unexpected:
        raise RuntimeError(f"gathering the FSDP shards: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return whole


@contextmanager
def _parameters_on_meta():
    """Every parameter registered meanwhile is moved to the meta device at once (no data kept;
    initialisers run on it as no-ops); buffers are created as usual."""
    import torch

    register = torch.nn.Module.register_parameter

    def on_meta(module: Any, name: str, param: Any) -> None:
        register(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register
