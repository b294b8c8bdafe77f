"""A report in one of its formats: ``text`` (the requirement's sample layout), ``md``,
``json`` (the stored form) or ``html`` (one page with charts)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .html import render_html
from .model import Report
from .text import render_json, render_markdown, render_text

__all__ = ["FORMATS", "render"]

_RENDERERS: dict[str, Callable[[Report], str]] = {
    "text": render_text, "md": render_markdown, "json": render_json, "html": render_html,
}
FORMATS = tuple(_RENDERERS)


def render(report: Report | Mapping[str, Any], fmt: str) -> str:
    """*report* (the model, or its JSON form such as ``PerformanceReport.data``) as *fmt*;
    ValueError for an unknown format, InvalidReport for data that is not a report."""
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return renderer(report if isinstance(report, Report) else Report.from_json(report))
