"""Generated documentation is current (``make docs``)."""

from __future__ import annotations

from pathlib import Path

from tools.docs import GENERATED

ROOT = Path(__file__).resolve().parent.parent


def test_generated_docs_are_current() -> None:
    stale = [rel for rel, build in GENERATED.items() if (ROOT / rel).read_text() != build()]
    assert not stale, f"run `make docs` and commit: {stale}"
