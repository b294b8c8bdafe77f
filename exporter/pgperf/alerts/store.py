"""The alert lifecycle in ``performance_alerts``: fired, acknowledged, resolved; by whom, when.

Rows are keyed by ``alert_id``; for alerts from Alertmanager it is derived from the
alert's fingerprint and start time, so a repeated notification updates the same row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..models import PerformanceAlert
from ..store.client import StoreClient

__all__ = ["AlertNotFound", "AlertStore", "InvalidTransition"]

STATES = ("firing", "acknowledged", "resolved")
_COLUMNS = (
    "alert_id", "severity", "metric", "message", "status", "timestamp", "target", "threshold_value",
    "current_value", "acknowledged", "acknowledged_by", "acknowledged_at", "resolved_at", "resolved_by",
    "labels", "annotations", "silence_id",
)


class AlertNotFound(LookupError):
    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no alert with id {alert_id!r}")
        self.alert_id = alert_id


class InvalidTransition(ValueError):
    """E.g. acknowledging a resolved alert."""


def _alert(row: dict[str, Any]) -> PerformanceAlert:
    values = {k: row[k] for k in _COLUMNS}
    for key in ("threshold_value", "current_value"):
        if values[key] is not None:
            values[key] = float(values[key])
    return PerformanceAlert(**values)


class AlertStore:
    def __init__(self, client: StoreClient) -> None:
        self.client = client
        self.table = sql.SQL("{}.performance_alerts").format(sql.Identifier(client.schema))
        self._select = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), self.table)

    def get(self, alert_id: str) -> PerformanceAlert:
        with self.client.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(self._select + sql.SQL(" WHERE alert_id = %s"), (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(alert_id)
        return _alert(row)

    def list(
        self,
        *,
        states: Sequence[str] = (),
        severities: Sequence[str] = (),
        since: datetime | None = None,
        target: str | None = None,
        limit: int = 500,
    ) -> list[PerformanceAlert]:
        where: list[sql.Composable] = []
        params: list[Any] = []
        if states:
            where.append(sql.SQL("status = ANY(%s)"))
            params.append(list(states))
        if severities:
            where.append(sql.SQL("severity = ANY(%s)"))
            params.append(list(severities))
        if since is not None:
            where.append(sql.SQL('"timestamp" >= %s'))
            params.append(since)
        if target is not None:
            where.append(sql.SQL("target = %s"))
            params.append(target)
        query = self._select
        if where:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        query += sql.SQL(' ORDER BY "timestamp" DESC LIMIT %s')
        params.append(limit)
        with self.client.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return [_alert(r) for r in cur.execute(query, params).fetchall()]

    def acknowledge(self, alert_id: str, by: str, *, silence_id: str | None = None,
                    conn: psycopg.Connection[Any] | None = None) -> PerformanceAlert:
        """Record who acknowledged the alert and when (idempotent for the same state)."""
        query = sql.SQL(
            "UPDATE {} SET acknowledged = true, acknowledged_by = %s, acknowledged_at = now(),"
            " status = 'acknowledged', silence_id = COALESCE(%s, silence_id), updated_at = now()"
            " WHERE alert_id = %s AND status = 'firing'"
        ).format(self.table)
        return self._transition(query, (by, silence_id, alert_id), alert_id, "acknowledged", conn)

    def resolve(self, alert_id: str, by: str, *, conn: psycopg.Connection[Any] | None = None) -> PerformanceAlert:
        """Record who resolved the alert and when."""
        query = sql.SQL(
            "UPDATE {} SET resolved_at = now(), resolved_by = %s, status = 'resolved', updated_at = now()"
            " WHERE alert_id = %s AND status <> 'resolved'"
        ).format(self.table)
        return self._transition(query, (by, alert_id), alert_id, "resolved", conn)

    def _transition(self, query: sql.Composed, params: tuple[Any, ...], alert_id: str, state: str,
                    conn: psycopg.Connection[Any] | None) -> PerformanceAlert:
        if conn is None:
            with self.client.connection() as own:
                updated = own.execute(query, params).rowcount
        else:
            updated = conn.execute(query, params).rowcount
        alert = self.get(alert_id)
        if not updated and alert.status != state:
            raise InvalidTransition(f"alert {alert_id} is {alert.status}; it cannot become {state}")
        return alert
