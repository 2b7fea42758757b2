"""Stop every rank, naming the one that was lost, when a process of a multi-process run dies or hangs.

A collective waits for every rank. A rank that was killed usually makes the others' next
collective fail with a socket error that names an address, not a rank; a rank that hangs (frozen,
stopped, swapping) makes them wait until the backend's timeout, half an hour by default. Here each
rank publishes a heartbeat counter in the process group's key-value store (the rendezvous store
every launcher sets up) from a background thread, and watches the others':

- a peer whose counter has not moved for ``lost_after_s`` seconds is reported lost, by rank, host
  and process id, and this rank exits with status 75 (``EX_TEMPFAIL``: rerun to resume); a peer
  on the same host whose process is gone is reported at the next heartbeat;
- a store that cannot be reached (its host, rank 0's process or node, is gone) is reported the
  same way, naming rank 0;
- a collective that fails first (the usual case for a killed peer) is explained by the same
  bookkeeping: the error line names the ranks whose heartbeats stopped.

Rerunning the same command resumes from ``checkpoints/last.ckpt``.

>>> trainer = L.Trainer(callbacks=[RankWatchdog(heartbeat_s=2, lost_after_s=30)], strategy="ddp", devices=2)
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from typing import Any

import lightning as L

__all__ = ["RankWatchdog", "LOST_RANK_EXIT_CODE"]

log = logging.getLogger("myna.train")

LOST_RANK_EXIT_CODE = 75
_PREFIX = "myna/heartbeat"


class RankWatchdog(L.Callback):
    """Heartbeats through the process group's store; stops this rank when another is lost.

    Args:
        heartbeat_s: seconds between heartbeats (and between checks of the others').
        lost_after_s: a rank whose heartbeat has not changed for this long is lost.
    """

    def __init__(self, heartbeat_s: float = 2.0, lost_after_s: float = 30.0):
        if heartbeat_s <= 0 or lost_after_s <= heartbeat_s:
            raise ValueError(f"distributed.heartbeat_s ({heartbeat_s}) must be > 0 and below "
                             f"distributed.lost_after_s ({lost_after_s})")
        self.heartbeat_s = heartbeat_s
        self.lost_after_s = lost_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_change: dict[int, tuple[int, float]] = {}
        self._who: dict[int, str] = {}
        self.rank, self.world_size = 0, 1

    # -- Lightning hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import torch.distributed as dist

        if stage != "fit" or trainer.world_size < 2 or not dist.is_initialized() or self._thread is not None:
            return
        self.rank, self.world_size = trainer.global_rank, trainer.world_size
        store = dist.distributed_c10d._get_default_store()
        store.set(f"{_PREFIX}/who/{self.rank}", f"{socket.gethostname()} pid {os.getpid()}")
        self._thread = threading.Thread(target=self._run, args=(store,), name="myna-watchdog", daemon=True)
        self._thread.start()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop.set()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A failed collective: wait (bounded) for the heartbeats to say which rank is gone."""
        if self._thread is None or isinstance(exception, KeyboardInterrupt):
            return
        deadline = time.monotonic() + self.lost_after_s + 2 * self.heartbeat_s
        while time.monotonic() < deadline:
            lost = self.lost_ranks()
            if lost:
                first = (str(exception).splitlines() or [""])[0][:200]
                self._report(lost, f"after: {type(exception).__name__}: {first}")
                os._exit(LOST_RANK_EXIT_CODE)  # no traceback: the line above says what happened
            time.sleep(self.heartbeat_s / 2)

    # -- bookkeeping
    def lost_ranks(self, now: float | None = None) -> list[int]:
        """Ranks whose heartbeat has not changed for ``lost_after_s`` seconds, or whose process on
        this host has ended."""
        now = time.monotonic() if now is None else now
        return sorted(r for r, (_, since) in self._last_change.items()
                      if now - since > self.lost_after_s or not self._process_alive(r))

    def _process_alive(self, rank: int) -> bool:
        """False only when ``rank`` runs on this host and its process has ended (or is a zombie)."""
        who = self._who.get(rank, "")
        host, _, pid = who.partition(" pid ")
        if host != socket.gethostname() or not pid.isdigit():
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, IndexError):
            return False
        except OSError:
            return True

    def observe(self, rank: int, beat: int, now: float) -> None:
        """Record rank ``rank``'s heartbeat counter as read at ``now``."""
        seen = self._last_change.get(rank)
        if seen is None or seen[0] != beat:
            self._last_change[rank] = (beat, now)

    def describe(self, rank: int) -> str:
        who = self._who.get(rank)
        return f"rank {rank}" + (f" ({who})" if who else "")

    def _report(self, lost: list[int], detail: str = "") -> None:
        names = ", ".join(self.describe(r) for r in lost)
        line = (f"myna: lost {names}: its process ended or sent no heartbeat for {self.lost_after_s:g} s; "
                f"rank {self.rank} stops"
                f"{' ' + detail if detail else ''}. Rerun the same command to resume from checkpoints/last.ckpt")
        log.error("%s", line)
        print(line, file=sys.stderr, flush=True)

    def _run(self, store: Any) -> None:
        beat = 0
        others = [r for r in range(self.world_size) if r != self.rank]
        last_ok = time.monotonic()
        for r in others:
            self._last_change[r] = (-1, last_ok)
        while not self._stop.wait(self.heartbeat_s):
            beat += 1
            now = time.monotonic()
            try:
                store.set(f"{_PREFIX}/{self.rank}", str(beat))
                for r in others:
                    key = f"{_PREFIX}/{r}"
                    if r not in self._who and store.check([f"{_PREFIX}/who/{r}"]):
                        self._who[r] = store.get(f"{_PREFIX}/who/{r}").decode()
                    if store.check([key]):
                        self.observe(r, int(store.get(key).decode()), now)
                last_ok = now
            except Exception as err:  # the store's host (rank 0's process, or the launcher of node 0) is gone
                if now - last_ok < self.lost_after_s:
                    continue
                self._report([0], f"(the rendezvous store is unreachable: {str(err).splitlines()[0][:160]})")
                os._exit(LOST_RANK_EXIT_CODE)
            lost = self.lost_ranks(now)
            if lost:
                self._report(lost)
                os._exit(LOST_RANK_EXIT_CODE)
