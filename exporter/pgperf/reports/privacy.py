"""Statement texts leave pgperf over HTTP (the report pages and API, deliveries) only when
``expose_query_text`` allows: they can hold literal values of the application."""

from __future__ import annotations

from typing import Any

from .formatting import clip
from .model import Report

__all__ = ["HIDDEN", "hide_query_texts"]

HIDDEN = "(query text hidden: set expose_query_text: true to show it)"


def hide_query_texts(report: Report) -> Report:
    """A copy of *report* without statement texts: the ``query_text`` fields, and the texts
    quoted inside other strings (a recommendation's message)."""
    data = report.to_json()
    texts: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "query_text" and isinstance(value, str) and value:
                    texts.add(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(data)
    # Longest first, so that a text is replaced before a shorter one that prefixes it.
    fragments = sorted({f for t in texts for f in (t, " ".join(t.split()), clip(t)) if len(f) >= 8},
                       key=len, reverse=True)

    def clean(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {k: clean(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [clean(item) for item in node]
        if isinstance(node, str):
            if key == "query_text":
                return HIDDEN if node else node
            for fragment in fragments:
                if fragment in node:
                    node = node.replace(fragment, "[query text hidden]")
            return node
        return node

    return Report.from_json(clean(data))
