"""The order of writing without a database: the memory queue in front of the spool, what
goes where while the store is up or down, and what stop() keeps."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pgperf.store import ResourceRow, SampleBatch, Spool
from pgperf.store.metrics import StoreStats
from pgperf.store.spool import Backlog, Pending


def batch(seq: int) -> SampleBatch:
    return SampleBatch("t", seq, 1000.0 + seq, ResourceRow("t", 1000.0 + seq, pg_up=True))


@pytest.fixture
def backlog(tmp_path: Path) -> Backlog:
    return Backlog(Spool(tmp_path, 10_000_000), StoreStats(), memory=3)


def drain(backlog: Backlog) -> list[tuple[int, bool]]:
    """Take everything as the writer would, writing each: (seq, from the spool)."""
    out = []
    while (item := backlog.take()) is not None:
        out.append((item.batch.seq, item.path is not None))
        backlog.written(item)
    return out


def test_memory_while_up_spool_while_down_and_then_until_empty(backlog: Backlog) -> None:
    backlog.put(batch(1), store_down=False)
    backlog.put(batch(2), store_down=True)
    backlog.put(batch(3), store_down=False)  # the spool holds a sample: this one queues behind it
    assert drain(backlog) == [(1, False), (2, True), (3, True)]
    backlog.put(batch(4), store_down=False)  # the spool is empty again: memory
    assert drain(backlog) == [(4, False)]
    counters = backlog.stats.counters
    assert (counters.accepted, counters.spooled, counters.dropped) == (4, 2, 0)


def test_a_full_memory_queue_overflows_to_the_spool_in_order(backlog: Backlog) -> None:
    for seq in range(1, 6):
        backlog.put(batch(seq), store_down=False)
    assert drain(backlog) == [(1, False), (2, False), (3, False), (4, True), (5, True)]


def test_spill_keeps_the_order_of_the_item_in_hand_and_the_queue(backlog: Backlog) -> None:
    for seq in (1, 2, 3):
        backlog.put(batch(seq), store_down=False)
    item = backlog.take()
    assert item is not None and item.batch.seq == 1
    backlog.spill(item)  # the store went away while writing 1
    assert len(backlog.spool) == 3
    assert drain(backlog) == [(1, True), (2, True), (3, True)]


def test_drain_at_stop_keeps_the_sample_in_hand_only_when_the_writer_ended(backlog: Backlog) -> None:
    for seq in (1, 2):
        backlog.put(batch(seq), store_down=False)
    assert backlog.take() is not None  # 1 in hand: the writer may still be writing it
    assert backlog.drain(include_in_hand=False) == 1
    assert [item.batch.seq for item in [backlog.take()] if item is not None] == [2]
    assert backlog.drain(include_in_hand=True) == 1  # the writer ended without writing 1: kept
    assert len(backlog.spool) == 2


def test_a_sample_the_spool_cannot_take_is_counted_once_logged_once(backlog: Backlog, monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    def full(_batch: SampleBatch) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(backlog.spool, "append", full)
    for seq in (1, 2, 3):
        backlog.put(batch(seq), store_down=True)
    assert backlog.stats.counters.dropped == 3
    assert caplog.text.count("cannot write to the spool") == 1


def test_a_refused_sample_is_kept_in_rejected(backlog: Backlog) -> None:
    backlog.put(batch(1), store_down=False)
    item = backlog.take()
    assert item is not None
    backlog.reject(item)
    assert backlog.stats.counters.rejected == 1
    assert len(list(backlog.spool.rejected_dir.glob("*.json.gz"))) == 1
    assert backlog.take() is None
    backlog.reject(Pending(batch(2), backlog.spool.dir / "vanished.json.gz"))  # dropped at the bound meanwhile
    assert backlog.stats.counters.rejected == 1
