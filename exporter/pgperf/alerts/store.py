"""The alert lifecycle in ``performance_alerts``: fired, acknowledged, resolved; by whom, when.

Rows are keyed by ``alert_id``; for alerts from Alertmanager it is derived from the
alert's fingerprint and start time, so a repeated notification updates the same row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .. import audit
from ..audit import PYTHON, Actor
from ..models import PerformanceAlert
from ..store.client import StoreClient, where
from .webhook import AlertEvent

__all__ = ["AlertNotFound", "AlertStore", "InvalidTransition"]

STATES = ("firing", "acknowledged", "resolved")
#: Who reopens an alert resolved by hand that Alertmanager still notifies, in the audit log.
ALERTMANAGER = Actor("alertmanager", "operator")
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

    def search(
        self,
        *,
        states: Sequence[str] = (),
        severities: Sequence[str] = (),
        since: datetime | None = None,
        target: str | None = None,
        limit: int = 500,
    ) -> list[PerformanceAlert]:
        filters, params = where(("status = ANY(%s)", list(states) or None),
                                ("severity = ANY(%s)", list(severities) or None),
                                ('"timestamp" >= %s', since), ("target = %s", target))
        query = self._select + filters + sql.SQL(' ORDER BY "timestamp" DESC LIMIT %s')
        params.append(limit)
        with self.client.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return [_alert(r) for r in cur.execute(query, params).fetchall()]

    def record(self, events: Sequence[AlertEvent]) -> list[PerformanceAlert]:
        """Record notifications, idempotently per alert id (fingerprint + start time).

        A firing event inserts the alert or refreshes its message and value without
        touching its state (an acknowledged alert stays acknowledged); a resolved event
        resolves it, by ``alertmanager``, unless someone resolved it already. A firing
        event for an alert someone resolved by hand reopens it: Alertmanager still holds it,
        so Prometheus still fires it, and pgperf must not say otherwise (its acknowledgment,
        whose silence was expired, is cleared; the audit log keeps the history). Returns the
        alerts that were new or reopened, firing.
        """
        fired: list[str] = []
        reopen_sql = sql.SQL(
            "WITH old AS (SELECT alert_id, resolved_by FROM {t} WHERE alert_id = %s AND status = 'resolved'"
            " AND resolved_by IS DISTINCT FROM 'alertmanager' FOR UPDATE)"
            " UPDATE {t} SET status = 'firing', resolved_at = NULL, resolved_by = NULL, acknowledged = false,"
            " acknowledged_by = NULL, acknowledged_at = NULL, silence_id = NULL, updated_at = now()"
            " FROM old WHERE {t}.alert_id = old.alert_id RETURNING old.resolved_by"
        ).format(t=self.table)
        firing_sql = sql.SQL(
            "INSERT INTO {t} (alert_id, target, severity, metric, message, threshold_value, current_value,"
            ' "timestamp", fingerprint, source, status, labels, annotations, starts_at, ends_at)'
            " VALUES (%(alert_id)s, %(target)s, %(severity)s, %(metric)s, %(message)s, %(threshold)s, %(value)s,"
            " %(starts_at)s, %(fingerprint)s, 'alertmanager', 'firing', %(labels)s, %(annotations)s, %(starts_at)s,"
            " %(ends_at)s)"
            " ON CONFLICT (alert_id) DO UPDATE SET message = EXCLUDED.message, severity = EXCLUDED.severity,"
            " current_value = EXCLUDED.current_value, threshold_value = EXCLUDED.threshold_value,"
            " annotations = EXCLUDED.annotations, ends_at = EXCLUDED.ends_at, updated_at = now()"
            " RETURNING (xmax = 0) AS inserted"
        ).format(t=self.table)
        resolved_sql = sql.SQL(
            "INSERT INTO {t} (alert_id, target, severity, metric, message, threshold_value, current_value,"
            ' "timestamp", fingerprint, source, status, labels, annotations, starts_at, ends_at, resolved_at,'
            " resolved_by)"
            " VALUES (%(alert_id)s, %(target)s, %(severity)s, %(metric)s, %(message)s, %(threshold)s, %(value)s,"
            " %(starts_at)s, %(fingerprint)s, 'alertmanager', 'resolved', %(labels)s, %(annotations)s,"
            " %(starts_at)s, %(ends_at)s, COALESCE(%(ends_at)s, now()), 'alertmanager')"
            " ON CONFLICT (alert_id) DO UPDATE SET status = 'resolved',"
            " resolved_at = COALESCE({t}.resolved_at, EXCLUDED.resolved_at),"
            " resolved_by = COALESCE({t}.resolved_by, EXCLUDED.resolved_by),"
            " ends_at = EXCLUDED.ends_at, updated_at = now()"
            " RETURNING false AS inserted"
        ).format(t=self.table)
        with self.client.connection() as conn, conn.transaction():
            for e in events:
                params = {
                    "alert_id": e.alert_id, "target": e.target, "severity": e.severity, "metric": e.name,
                    "message": e.message, "threshold": e.threshold_value, "value": e.current_value,
                    "starts_at": e.starts_at, "ends_at": e.ends_at, "fingerprint": e.fingerprint,
                    "labels": Jsonb(e.labels), "annotations": Jsonb(e.annotations),
                }
                if e.status == "firing":
                    reopened = conn.execute(reopen_sql, (e.alert_id,)).fetchone()
                    if reopened is not None:
                        audit.record(conn, self.client.schema, ALERTMANAGER, "reopen", e.alert_id,
                                     {"resolved_by": reopened[0], "reason": "Alertmanager still notifies it as firing"})
                        fired.append(e.alert_id)
                row = conn.execute(firing_sql if e.status == "firing" else resolved_sql, params).fetchone()
                if e.status == "firing" and row is not None and row[0]:
                    fired.append(e.alert_id)
        return [self.get(alert_id) for alert_id in fired]

    def open_alerts(self) -> list[tuple[str, str | None, str, str | None]]:
        """(alert_id, fingerprint, status, silence_id) of unresolved Alertmanager alerts."""
        query = sql.SQL(
            "SELECT alert_id, fingerprint, status, silence_id FROM {} WHERE status <> 'resolved'"
            " AND source = 'alertmanager'"
        ).format(self.table)
        with self.client.connection() as conn:
            return [tuple(r) for r in conn.execute(query).fetchall()]

    def acknowledge(self, alert_id: str, by: str, *, silence_id: str | None = None,
                    actor: Actor = PYTHON) -> PerformanceAlert:
        """Record who acknowledged the alert and when, with its audit row."""
        query = sql.SQL(
            "UPDATE {} SET acknowledged = true, acknowledged_by = %s, acknowledged_at = now(),"
            " status = 'acknowledged', silence_id = COALESCE(%s, silence_id), updated_at = now()"
            " WHERE alert_id = %s AND status = 'firing'"
        ).format(self.table)
        return self._transition(query, (by, silence_id, alert_id), alert_id, "acknowledged", actor,
                                {"by": by, "silence_id": silence_id})

    def resolve(self, alert_id: str, by: str, *, actor: Actor = PYTHON) -> PerformanceAlert:
        """Record who resolved the alert and when, with its audit row."""
        query = sql.SQL(
            "UPDATE {} SET resolved_at = now(), resolved_by = %s, status = 'resolved', updated_at = now()"
            " WHERE alert_id = %s AND status <> 'resolved'"
        ).format(self.table)
        return self._transition(query, (by, alert_id), alert_id, "resolved", actor, {"by": by})

    def _transition(self, query: sql.Composed, params: tuple[Any, ...], alert_id: str, state: str,
                    actor: Actor, detail: dict[str, Any]) -> PerformanceAlert:
        with self.client.connection() as conn, conn.transaction():
            updated = conn.execute(query, params).rowcount
            if updated:
                action = "acknowledge" if state == "acknowledged" else "resolve"
                audit.record(conn, self.client.schema, actor, action, alert_id, detail)
        alert = self.get(alert_id)
        if not updated and alert.status != state:
            raise InvalidTransition(f"alert {alert_id} is {alert.status}; it cannot become {state}")
        return alert
