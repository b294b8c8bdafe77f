"""Performance reports: built in SQL from the stored samples, with rule-based
recommendations and anomaly detection, rendered as text, Markdown, JSON and HTML,
stored in ``performance_reports``, scheduled inside ``pgperf serve`` and served over HTTP.

``builder`` (SQL) -> ``report`` (the JSON form) -> ``recommendations`` and ``anomalies``;
``render``/``html`` draw it; ``service`` generates, stores and reads; ``scheduler`` and
``web`` put it on a timetable and on the network.
"""

from __future__ import annotations

from .render import FORMATS, render
from .service import ReportNotFound, ReportService

__all__ = ["FORMATS", "ReportNotFound", "ReportService", "render"]
