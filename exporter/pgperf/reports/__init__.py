"""Performance reports: built in SQL from the stored samples, with rule-based
recommendations and anomaly detection, rendered as text, Markdown, JSON and HTML,
stored in ``performance_reports``, scheduled inside ``pgperf serve`` and served over HTTP.

``queries`` (the SQL) -> ``builder`` -> ``model`` (the typed report, its JSON form) with
``recommendations`` and ``anomalies``; ``render`` draws it (``text``: text, Markdown, JSON;
``html``); ``service`` generates, stores and reads; ``scheduler`` and ``routes`` put it on
a timetable and on the network.
"""

from __future__ import annotations

# These imports are light: ``service`` imports what builds a report (``builder``,
# ``queries``, ``forecasting``, ``anomalies``) when the first report is built.
from .model import Report, ReportSettings
from .render import FORMATS, render
from .service import ReportNotFound, ReportService

__all__ = ["FORMATS", "Report", "ReportNotFound", "ReportService", "ReportSettings", "render"]
