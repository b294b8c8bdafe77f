"""The Alerts and reports dashboard (alerts.json): the alerts firing now in Prometheus, their
lifecycle as pgperf recorded it in the store (performance_alerts), and the performance
reports (performance_reports)."""

from __future__ import annotations

from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from ._panels import BLUE, FIRING, GREEN, ORANGE, RED, Board, Sql, grid, link, note, prom, series, single, sql_filter

__all__ = ["dashboard"]


def dashboard() -> model.Dashboard:
    board = Board("pgperf-alerts", "pgperf / Alerts and reports",
                  "Alerts firing now (Prometheus), their history and lifecycle as pgperf recorded it "
                  "(performance_alerts) and the performance reports (performance_reports).", sql=True)
    board.textbox("pgperf_url", "pgperf URL", "http://localhost:9187",
                  "Base URL of pgperf as the browser reaches it, for the links to its HTML reports")
    alert_filter = " AND ".join([
        sql_filter("labels->>'job'", "job"), sql_filter("labels->>'instance'", "instance"), sql_filter("target", "target"),
    ])
    severity_colours = {"critical": RED, "error": RED, "warning": ORANGE, "info": BLUE}
    status_colours = {"firing": RED, "acknowledged": ORANGE, "resolved": GREEN}
    board.row(
        "Now",
        single("Firing in Prometheus", "pgperf alerts firing now, as Prometheus evaluates them (ALERTS).", "short",
               [prom(f"count({FIRING}) or vector(0)", "firing", instant=True)], steps=[(None, GREEN), (1, ORANGE)]),
        single("Open in pgperf", "Alerts pgperf recorded as firing or acknowledged and not resolved yet "
               "(performance_alerts).", "short", [Sql(f"""
                   SELECT count(*) FILTER (WHERE status = 'firing') AS firing,
                          count(*) FILTER (WHERE status = 'acknowledged') AS acknowledged
                     FROM performance_alerts
                    WHERE status <> 'resolved' AND {alert_filter}
               """)], steps=[(None, GREEN), (1, ORANGE)], text_mode=common.BigValueTextMode.VALUE_AND_NAME, w=6),
        single("Time to acknowledge", "Mean time from firing to acknowledgement of the alerts fired in the time "
               "range.", "s", [Sql(f"""
                   SELECT avg(extract(epoch FROM acknowledged_at - "timestamp")) AS "time to acknowledge"
                     FROM performance_alerts
                    WHERE $__timeFilter("timestamp") AND acknowledged_at IS NOT NULL AND {alert_filter}
               """)], no_value="none acknowledged", w=4),
        single("Time to resolve", "Mean time from firing to resolution of the alerts fired in the time range.", "s",
               [Sql(f"""
                   SELECT avg(extract(epoch FROM resolved_at - "timestamp")) AS "time to resolve"
                     FROM performance_alerts
                    WHERE $__timeFilter("timestamp") AND resolved_at IS NOT NULL AND {alert_filter}
               """)], no_value="none resolved", w=4),
        note("Alert lifecycle", "Where the alerts come from and how to act on them.", """
            Prometheus evaluates the rules of `prometheus/rules/` and sends alerts to Alertmanager, which notifies
            by severity and always also pgperf's webhook: pgperf records each alert episode in `performance_alerts`.
            Acknowledge with `pgperf alerts ack ID --by NAME` (creates an Alertmanager silence) and resolve by hand
            with `pgperf alerts resolve ID --by NAME`; an alert whose condition clears is resolved by `alertmanager`.
            What to do for each alert: [docs/runbook.md](https://github.com/pgperf/pgperf/blob/main/docs/runbook.md).
        """, w=6, h=4),
        grid("Firing now", "pgperf alerts firing now in Prometheus with their labels.", "none",
             [prom(FIRING, instant=True, table_format=True)], hide=["Time", "Value", "__name__", "alertstate"], h=6,
             columns={"severity": {"mappings": severity_colours, "color": True}}),
    )
    board.row(
        "History",
        grid("Alert history", "Alerts pgperf recorded (performance_alerts) that fired in the time range or are still "
             "open, newest first: status, who acknowledged and resolved them and when ('alertmanager' when the "
             "condition cleared).", "short", [Sql(f"""
                 SELECT "timestamp" AS fired_at, status, severity, metric AS alert, target, message,
                        current_value, threshold_value, acknowledged_by, acknowledged_at,
                        resolved_by, resolved_at, alert_id
                   FROM performance_alerts
                  WHERE ($__timeFilter("timestamp") OR status <> 'resolved') AND {alert_filter}
                  ORDER BY "timestamp" DESC
                  LIMIT 1000
             """)], h=10, columns={
                 "status": {"mappings": status_colours, "color": True},
                 "severity": {"mappings": severity_colours, "color": True},
                 "message": {"width": 360},
             }),
        series("Alerts fired", "Alerts fired per hour, by severity (performance_alerts).", "short", [Sql(f"""
                 SELECT $__timeGroupAlias("timestamp", '1h'), severity AS metric, count(*) AS value
                   FROM performance_alerts
                  WHERE $__timeFilter("timestamp") AND {alert_filter}
                  GROUP BY 1, 2
                  ORDER BY 1
             """, "time_series")], bars=True, stack=True, min_val=0),
        grid("Most frequent alerts", "Alerts that fired most often in the time range, with how many were "
             "acknowledged and how long they lasted on average.", "short", [Sql(f"""
                 SELECT metric AS alert, severity, count(*) AS fired,
                        count(*) FILTER (WHERE acknowledged) AS acknowledged,
                        avg(extract(epoch FROM coalesce(resolved_at, now()) - "timestamp")) AS mean_duration
                   FROM performance_alerts
                  WHERE $__timeFilter("timestamp") AND {alert_filter}
                  GROUP BY metric, severity
                  ORDER BY fired DESC
                  LIMIT 20
             """)], w=12, columns={"mean_duration": {"unit": "s"},
                                   "severity": {"mappings": severity_colours, "color": True}}),
    )
    board.row(
        "Reports",
        grid("Reports", "Performance reports in the store (performance_reports), newest first, whatever the time "
             "range. Click an id to open the report in pgperf (the pgperf URL variable).", "none", [Sql(f"""
                 SELECT report_id, kind, target, period_start, period_end, generated_at
                   FROM performance_reports
                  WHERE {sql_filter("target", "target")}
                  ORDER BY generated_at DESC
                  LIMIT 200
             """)], columns={"report_id": {"links": [link("Open report ${__value.raw}",
                                                           "${pgperf_url}/reports/${__value.raw}", blank=True)]}}),
    )
    return board.build()
