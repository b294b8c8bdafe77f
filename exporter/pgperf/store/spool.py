"""Samples waiting for the store: a short queue in memory in front of an on-disk spool.

:class:`Backlog` is the order of writing. A sample goes to the memory queue while the
store takes writes and nothing waits on disk; otherwise (store down, spool not empty,
queue full) it joins the spool, so that samples are written in the order they were taken.
The writer takes the next sample with ``take()`` — the queue first, then the oldest file —
and reports what became of it: ``written``, ``spill`` (the store went away: it and the
queue go to the spool) or ``reject`` (the store refused its content). A sample the spool
cannot take (disk full) is counted as dropped and logged once per kind of error.

:class:`Spool`, the on-disk part:

One gzip-compressed JSON file per sample, named by its sample time so that a directory
listing is the write order. Files are written to a temporary name and renamed, so a crash
never leaves half a sample. The total size is bounded: when a new sample would exceed the
bound, the oldest samples are dropped, counted and logged (recent history is the more
useful after a long outage). A lock file keeps two processes from sharing a spool.

A file that cannot be read back (truncated, corrupt, or written by an incompatible pgperf)
is moved to ``rejected/`` instead of blocking the spool, counted in ``unreadable`` and
logged. ``rejected/`` is bounded too (``rejected_max_bytes``): beyond it the oldest
rejected files are removed, counted in ``dropped`` and logged.
"""

from __future__ import annotations

import fcntl
import gzip
import logging
import os
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .metrics import StoreStats
from .rows import SampleBatch

__all__ = ["MEMORY_QUEUE", "Backlog", "Pending", "Spool", "SpoolLocked", "default_spool_dir"]

log = logging.getLogger(__name__)


class SpoolLocked(RuntimeError):
    """Another pgperf process uses this spool directory."""


def default_spool_dir() -> Path:
    state = os.environ.get("STATE_DIRECTORY") or os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state else Path.home() / ".local" / "state"
    return base / "pgperf" / "spool"


# What a spool file that cannot be read back raises: gzip (BadGzipFile is an OSError,
# truncation an EOFError, a bad checksum zlib.error), JSON and the SampleBatch fields.
_UNREADABLE = (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError)
REJECTED_MAX_BYTES = 16 * 1024 * 1024


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int, rejected_max_bytes: int = REJECTED_MAX_BYTES) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.rejected_max_bytes = rejected_max_bytes
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.rejected_dir = self.dir / "rejected"
        self._lock = threading.Lock()
        self._lock_file = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolLocked(
                f"spool directory {self.dir} is in use by another pgperf process; "
                "give each process its own store.spool_dir"
            ) from None
        for stale in self.dir.glob("*.tmp"):
            stale.unlink(missing_ok=True)  # a write interrupted by a crash
        self.dropped = 0  # samples lost: spool bound, and rejected files removed at their bound
        self.unreadable = 0  # spool files that could not be read back, moved to rejected/
        self._files = sorted(p for p in self.dir.glob("*.json.gz"))
        self._bytes = sum(p.stat().st_size for p in self._files)
        if self._files:
            log.info("store spool: %d sample(s) from an earlier run wait in %s", len(self._files), self.dir)

    @staticmethod
    def _name(batch: SampleBatch) -> str:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in batch.target)[:60]
        return f"{int(batch.taken_at * 1e6):020d}-{safe}-{batch.seq:012d}.json.gz"

    def append(self, batch: SampleBatch) -> Path:
        data = gzip.compress(batch.to_json(), compresslevel=3)
        with self._lock:
            while self._files and self._bytes + len(data) > self.max_bytes:
                oldest = self._files.pop(0)
                size = oldest.stat().st_size if oldest.exists() else 0
                oldest.unlink(missing_ok=True)
                self._bytes -= size
                self.dropped += 1
                log.warning(
                    "store spool full (%d bytes): dropped the oldest sample %s; %d dropped so far",
                    self.max_bytes, oldest.name, self.dropped,
                )
            path = self.dir / self._name(batch)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            self._files.append(path)
            self._files.sort()
            self._bytes += len(data)
        return path

    def oldest(self) -> tuple[Path, SampleBatch] | None:
        """The oldest readable sample. A file that vanished meanwhile (dropped at the bound
        by ``append``) is skipped; one that cannot be read is moved to ``rejected/``."""
        while True:
            with self._lock:
                if not self._files:
                    return None
                path = self._files[0]
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                self._forget(path)
                continue
            try:
                return path, SampleBatch.from_json(gzip.decompress(data))
            except _UNREADABLE as exc:
                self.unreadable += 1
                log.error(
                    "store spool: cannot read %s (%s: %s), moved to %s; %d unreadable so far",
                    path.name, type(exc).__name__, str(exc).strip() or "no detail", self.rejected_dir, self.unreadable,
                )
                try:
                    self.reject(path)
                except OSError as move_error:  # cannot even move it: forget it, do not block the spool
                    log.error("store spool: cannot move %s aside (%s); skipping it", path.name, move_error)
                    self._forget(path)

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._forget_locked(path)

    def _forget_locked(self, path: Path) -> None:
        if path in self._files:
            self._files.remove(path)
            try:
                self._bytes -= path.stat().st_size
            except FileNotFoundError:
                pass

    def remove(self, path: Path) -> None:
        with self._lock:
            self._forget_locked(path)
            path.unlink(missing_ok=True)

    def reject(self, path: Path) -> bool:
        """Keep a sample the store refused (a data error) aside, for inspection. False when
        the file was gone already (dropped at the bound meanwhile, and counted there)."""
        self.rejected_dir.mkdir(exist_ok=True)
        self._forget(path)
        try:
            os.replace(path, self.rejected_dir / path.name)
        except FileNotFoundError:
            return False
        self._trim_rejected()
        return True

    def _trim_rejected(self) -> None:
        """Remove the oldest rejected files beyond ``rejected_max_bytes`` (counted, logged)."""
        files = sorted(self.rejected_dir.glob("*.json.gz"))
        sizes: dict[Path, int] = {}
        for f in files:
            try:
                sizes[f] = f.stat().st_size
            except FileNotFoundError:
                continue
        total = sum(sizes.values())
        candidates = list(sizes)  # oldest first; the newest is always kept
        while total > self.rejected_max_bytes and len(candidates) > 1:
            f = candidates.pop(0)
            f.unlink(missing_ok=True)
            total -= sizes[f]
            with self._lock:
                self.dropped += 1
            log.warning(
                "store spool: rejected/ over its bound (%d bytes): removed the oldest rejected sample %s; "
                "%d dropped so far", self.rejected_max_bytes, f.name, self.dropped,
            )

    def __len__(self) -> int:
        return len(self._files)

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._lock_file.close()


MEMORY_QUEUE = 64  # batches kept in memory before they go to the spool


@dataclass(frozen=True)
class Pending:
    """A sample waiting to be written, from memory (``path`` None) or from a spool file."""

    batch: SampleBatch
    path: Path | None = None


class Backlog:
    """The memory queue and the spool, in writing order; see the module docstring.

    ``put`` runs in the sampler threads, everything else in the writer's thread (and
    ``drain`` at stop, once that thread has ended or given up)."""

    def __init__(self, spool: Spool, stats: StoreStats, memory: int = MEMORY_QUEUE) -> None:
        self.spool = spool
        self.stats = stats
        self.memory = memory
        self._queue: deque[SampleBatch] = deque()
        self._lock = threading.Lock()
        self._in_hand: SampleBatch | None = None  # taken from the memory queue, not yet written

    def put(self, batch: SampleBatch, *, store_down: bool) -> None:
        """Accept one sample; never blocks on the store."""
        self.stats.count("accepted")
        with self._lock:
            to_spool = store_down or len(self.spool) > 0 or len(self._queue) >= self.memory
            if not to_spool:
                self._queue.append(batch)
        if to_spool:
            self._to_spool([batch])

    def take(self) -> Pending | None:
        """The next sample to write: the memory queue's oldest, else the spool's."""
        with self._lock:
            if self._queue:
                self._in_hand = self._queue.popleft()
                return Pending(self._in_hand)
        oldest = self.spool.oldest()
        return None if oldest is None else Pending(oldest[1], oldest[0])

    def written(self, item: Pending) -> None:
        if item.path is not None:
            self.spool.remove(item.path)
        with self._lock:
            self._in_hand = None

    def spill(self, item: Pending) -> None:
        """The store cannot take *item*: a sample from memory goes to the spool, with the
        memory queue behind it (a spooled one stays where it is)."""
        if item.path is not None:
            return
        with self._lock:
            pending = [item.batch, *self._queue]
            self._queue.clear()
            self._in_hand = None
        self._to_spool(pending)

    def spill_in_hand(self) -> None:
        """After an unexpected error: keep the sample taken from memory in the spool."""
        with self._lock:
            batch, self._in_hand = self._in_hand, None
        if batch is not None:
            self._to_spool([batch])

    def reject(self, item: Pending) -> None:
        """The store refused *item* for its content: keep it in ``rejected/`` (counted)."""
        with self._lock:
            self._in_hand = None
        path = item.path
        if path is None:
            try:
                path = self.spool.append(item.batch)
            except OSError as exc:
                self.stats.count("dropped")
                log.error("store: cannot keep the refused sample in %s (%s); dropped", self.spool.rejected_dir, exc)
                return
        if self.spool.reject(path):
            self.stats.count("rejected")
        else:
            self.stats.touch()

    def drain(self, *, include_in_hand: bool) -> int:
        """At stop: the memory queue (and the sample in hand, when the writer's thread has
        ended) to the spool; return how many went."""
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
            if include_in_hand and self._in_hand is not None:
                pending.insert(0, self._in_hand)
                self._in_hand = None
        self._to_spool(pending)
        return len(pending)

    def _to_spool(self, batches: list[SampleBatch]) -> None:
        """Append to the spool; a batch the spool cannot take (disk full) is counted as dropped."""
        for batch in batches:
            try:
                self.spool.append(batch)
            except OSError as exc:
                dropped = self.stats.count("dropped")
                self.stats.error("spool_write")
                self.stats.log_once(
                    f"spool:{type(exc).__name__}:{getattr(exc, 'errno', None)}", logging.ERROR,
                    "store: cannot write to the spool %s (%s: %s): samples that cannot reach the store are dropped "
                    "(%d so far); free space or fix the directory's permissions",
                    self.spool.dir, type(exc).__name__, exc, dropped, logger=log)
            else:
                self.stats.count("spooled")
