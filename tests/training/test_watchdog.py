"""myna.training.watchdog: which ranks count as lost (the multi-process kill is in test_ddp.py)."""

import socket
import subprocess
import sys

import pytest

from myna.training.watchdog import RankWatchdog


def test_a_rank_is_lost_when_its_heartbeat_stops_moving():
    dog = RankWatchdog(heartbeat_s=1, lost_after_s=10)
    dog.observe(1, beat=1, now=100.0)
    dog.observe(2, beat=1, now=100.0)
    dog.observe(1, beat=2, now=108.0)  # rank 1 keeps beating, rank 2 does not
    dog.observe(2, beat=1, now=108.0)
    assert dog.lost_ranks(now=109.0) == []
    assert dog.lost_ranks(now=111.0) == [2]
    assert dog.describe(2) == "rank 2"


def test_a_rank_whose_process_on_this_host_ended_is_lost_at_once():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dog = RankWatchdog(heartbeat_s=1, lost_after_s=10)
    dog.observe(1, beat=1, now=100.0)
    dog._who[1] = f"{socket.gethostname()} pid {ended.pid}"
    assert dog.lost_ranks(now=100.5) == [1]
    assert dog.describe(1) == f"rank 1 ({socket.gethostname()} pid {ended.pid})"
    dog._who[1] = f"another-host pid {ended.pid}"  # elsewhere only the heartbeat tells
    assert dog.lost_ranks(now=100.5) == []


def test_the_heartbeat_must_be_shorter_than_the_loss_timeout():
    with pytest.raises(ValueError, match=r"heartbeat_s \(5\) must be > 0 and below distributed.lost_after_s \(5\)"):
        RankWatchdog(heartbeat_s=5, lost_after_s=5)
