"""How a report writes numbers and texts: shared by the text, Markdown and HTML renderings
and by the messages of the recommendations."""

from __future__ import annotations

from typing import Any

__all__ = ["QUERY_CHARS", "clip", "evidence_line", "ms", "pct", "scalar", "short", "size", "time_split", "title"]

TITLES = {"daily": "Daily", "weekly": "Weekly", "on_demand": "On-demand", "periodic": "Periodic"}
QUERY_CHARS = 100


def ms(value: float | None) -> str:
    """Milliseconds as the sample report writes them: 2,150.00ms; small values keep 3 decimals."""
    if value is None:
        return "n/a"
    return f"{value:,.2f}ms" if value >= 1 else f"{value:,.3f}ms"


def pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}%"


def size(n: float | None) -> str:
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TB"  # pragma: no cover


def short(text: str | None, limit: int = QUERY_CHARS) -> str:
    """A statement on one line, cut to *limit* characters with `` ...``."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 4].rstrip() + " ..."


def clip(text: str, limit: int = 80) -> str:
    """A statement on one line, cut to *limit* characters with ``...``, for a message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_BASIS = {"wait_samples": "from wait samples", "execution_less_waits": "CPU: execution time less sampled waits",
          "execution_less_io": "no wait samples: execution time counted as CPU"}


def time_split(split: dict[str, float] | None, basis: str | None, cpu_per_day: float | None) -> str:
    """``CPU 75.0%, IO 25.0% (from wait samples); 108.0 CPU-s/day``, or empty when unknown."""
    if not split:
        return ""
    parts = ", ".join(f"{kind} {share:.1f}%" for kind, share in sorted(split.items(), key=lambda kv: (-kv[1], kv[0])))
    per_day = f"; {cpu_per_day:,.1f} CPU-s/day" if cpu_per_day is not None else ""
    return f"{parts} ({_BASIS.get(basis or '', basis or '')}){per_day}"


def title(kind: str, report_id: str) -> str:
    return f"{TITLES.get(kind, kind.title())} Performance Report - {report_id}"


def scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def evidence_line(evidence: dict[str, Any]) -> str:
    """The evidence as one line: scalars as key=value, lists by what they name."""
    parts = []
    for key, value in evidence.items():
        if value is None:
            continue
        if isinstance(value, list):
            names = []
            for item in value:
                if isinstance(item, dict):
                    name = next((item[k] for k in ("index", "table", "query_id") if k in item), None)
                    if name is not None:
                        names.append(str(name))
                else:
                    names.append(str(item))
            if names:
                parts.append(f"{key}=[{', '.join(names[:5])}{', ...' if len(names) > 5 else ''}]")
        elif not isinstance(value, dict):
            parts.append(f"{key}={scalar(value)}")
    return ", ".join(parts)
