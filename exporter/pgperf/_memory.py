"""Giving freed memory back to the operating system after each sample (glibc only).

CPython hands every allocation above 512 bytes (the exposition text, row buffers, the
tuples of large families) to the C allocator. glibc's malloc keeps what is freed for
later instead of returning it, so the resident memory of a long-running exporter creeps
up to its busiest moment and stays there. ``pgperf serve`` asks glibc to release its free
pages after each sample with ``malloc_trim(0)``, which takes well under a millisecond;
with another C library (musl, macOS) this does nothing.

glibc also gives each thread that allocates at the same time as another an arena of its
own, up to eight per core: memory one thread frees stays in its arena, unused by the
others. ``pgperf serve`` runs a thread per target, the web server's threads, the store
writer and the report scheduler; ``limit_malloc_arenas`` (``mallopt(M_ARENA_MAX, 2)``,
what ``MALLOC_ARENA_MAX=2`` does) makes them share two, about 3 MiB less resident for one
target, at no measurable cost in CPU. An ``MALLOC_ARENA_MAX`` in the environment wins.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

__all__ = ["limit_malloc_arenas", "release_free_memory"]


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Return the C allocator's free pages to the operating system, where it can."""
    if _TRIM is not None:
        _TRIM(0)


_M_ARENA_MAX = -8  # malloc.h


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Let glibc's malloc use at most *arenas* arenas (see the module docstring); to be
    called before threads start. False when the C library is not glibc or the environment
    sets ``MALLOC_ARENA_MAX`` itself."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
