"""The on-disk spool: samples waiting for the store to come back.

One gzip-compressed JSON file per sample, named by its sample time so that a directory
listing is the write order. Files are written to a temporary name and renamed, so a crash
never leaves half a sample. The total size is bounded: when a new sample would exceed the
bound, the oldest samples are dropped, counted and logged (recent history is the more
useful after a long outage). A lock file keeps two processes from sharing a spool.
"""

from __future__ import annotations

import fcntl
import gzip
import logging
import os
import threading
from pathlib import Path

from .rows import SampleBatch

__all__ = ["Spool", "SpoolLocked", "default_spool_dir"]

log = logging.getLogger(__name__)


class SpoolLocked(RuntimeError):
    """Another pgperf process uses this spool directory."""


def default_spool_dir() -> Path:
    state = os.environ.get("STATE_DIRECTORY") or os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state else Path.home() / ".local" / "state"
    return base / "pgperf" / "spool"


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
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
        self.dropped = 0
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
        with self._lock:
            if not self._files:
                return None
            path = self._files[0]
        return path, SampleBatch.from_json(gzip.decompress(path.read_bytes()))

    def remove(self, path: Path) -> None:
        with self._lock:
            if path in self._files:
                self._files.remove(path)
                self._bytes -= path.stat().st_size if path.exists() else 0
            path.unlink(missing_ok=True)

    def reject(self, path: Path) -> None:
        """Keep a sample the store refused (a data error) aside, for inspection."""
        self.rejected_dir.mkdir(exist_ok=True)
        with self._lock:
            if path in self._files:
                self._files.remove(path)
                self._bytes -= path.stat().st_size if path.exists() else 0
        os.replace(path, self.rejected_dir / path.name)

    def __len__(self) -> int:
        return len(self._files)

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._lock_file.close()
