"""Which utterances each rank trained on: one file per epoch and rank (``exp_manager.log_utterance_ids``).

``utterances/epoch{E}_rank{R}.txt`` lists the ids of the utterances in rank R's training batches
of epoch E, one per line, in the order they were trained on (``manifest:line`` for manifests, the
cut id for Lhotse). A resumed run appends to the file of the epoch it resumes in. The union over
ranks of one epoch's files is how a user (and the tests) check that ranks split the data.

>>> trainer = L.Trainer(callbacks=[UtteranceLog(exp_dir / "utterances")])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["UtteranceLog", "read_utterance_log"]


class UtteranceLog(L.Callback):
    """Appends each training batch's ``ids`` to this rank's file of the current epoch."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        ids = batch.get("ids") if isinstance(batch, dict) else None
        if not ids:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"epoch{trainer.current_epoch}_rank{trainer.global_rank}.txt"
        with path.open("a", encoding="utf-8") as f:
            f.writelines(f"{i}\n" for i in ids)


def read_utterance_log(folder: Path, epoch: int) -> dict[int, list[str]]:
    """{rank: ids in training order} of one epoch's files."""
    out = {}
    for path in sorted(Path(folder).glob(f"epoch{epoch}_rank*.txt")):
        out[int(path.stem.rsplit("rank", 1)[1])] = path.read_text(encoding="utf-8").splitlines()
    return out

