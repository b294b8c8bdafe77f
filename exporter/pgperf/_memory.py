"""Giving freed memory back to the operating system after each sample (glibc only).

CPython hands every allocation above 512 bytes (the exposition text, row buffers, the
tuples of large families) to the C allocator. glibc's malloc keeps what is freed for
later instead of returning it, so the resident memory of a long-running exporter creeps
up to its busiest moment and stays there. ``pgperf serve`` asks glibc to release its free
pages after each sample with ``malloc_trim(0)``, which takes well under a millisecond;
with another C library (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

__all__ = ["release_free_memory"]


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
