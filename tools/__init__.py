"""Tools for trying pgperf and for its tests: a throwaway PostgreSQL, workloads, the demo."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


def write_generated(root: Path, files: Mapping[str, str], *, check: bool, make_target: str) -> int:
    """Write generated *files* (paths relative to *root*), or with *check* only compare
    them with what is committed: 1 and the stale paths on stderr when they differ."""
    stale = []
    for rel, content in files.items():
        path = root / rel
        if check:
            if not path.exists() or path.read_text() != content:
                stale.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    if stale:
        print(f"out of date (run make {make_target}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0
