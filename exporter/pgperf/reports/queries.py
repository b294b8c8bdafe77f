"""The report's SQL: every figure of a report, aggregated over the stored tables.

A report covers the samples with ``start <= recorded_at < end`` of one target. Statement
figures come from ``query_metrics_hourly`` for the complete hours it holds (hours before
the target's rollup watermark) and from ``query_performance_metrics`` for the rest of the
window, so that a month of one-minute samples is read as hourly rows. Each part of the
report is one SQL statement that returns a JSON document; the builder (``builder.py``)
arranges the parts into the report.

Statement type and main table (the breakdown of the query analysis) are a heuristic on
the normalized text, documented in docs/report-schema.md:

* type: the first keyword after leading comments and parentheses — SELECT, INSERT,
  UPDATE, DELETE; ``WITH`` counts as the first INSERT/UPDATE/DELETE after a closing
  parenthesis, else SELECT; anything else is OTHER;
* table: the first name after ``FROM`` (SELECT, DELETE), ``INTO`` (INSERT) or
  ``UPDATE [ONLY]`` (UPDATE), lower-cased without quotes; none for other statements.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from ..insight.advice import IndexAdvice
from ..insight.store import read_advice, wait_seconds
from ..store.rollup import HOUR, floor_hour
from ._numpy import np
from .model import ReportSettings, iso

if TYPE_CHECKING:
    from ._robust import FloatArray

__all__ = ["RESOURCE_SERIES", "AnomalyInputs", "ReportQueries", "ResourceHistory", "StatementSeries", "Window"]

# Chart buckets: the smallest width that gives at most MAX_POINTS points over the window.
BUCKETS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
MAX_POINTS = 300
# Windows up to this long look for statement anomalies sample by sample; longer ones hour by hour.
FINE_ANOMALY_SPAN = timedelta(hours=6)
MIN_BASELINE_POINTS = 5
# Trends and growth rates (per day) are given only over at least this many seconds of samples:
# a slope over minutes extrapolated to a day is noise.
TREND_MIN_SPAN = 3600

# A name, schema-qualified or not; after FROM, not a function call (``extract(epoch FROM now())``).
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"[^"]+")(?:\.(?:[A-Za-z_][A-Za-z0-9_$]*|"[^"]+"))?(?![A-Za-z0-9_$."])'
_RELATION = _IDENT[:-1] + r'|\s*\()'
# Leading whitespace, comments and parentheses are skipped before the first keyword.
_BODY = r"regexp_replace(query_text, '^(\s|/\*.*?\*/|--[^\n]*\n|\()*', '')"
STATEMENT_TYPE_SQL = f"""CASE upper(substring({_BODY} from '^([A-Za-z]+)'))
    WHEN 'SELECT' THEN 'SELECT' WHEN 'INSERT' THEN 'INSERT' WHEN 'UPDATE' THEN 'UPDATE'
    WHEN 'DELETE' THEN 'DELETE' WHEN 'TABLE' THEN 'SELECT' WHEN 'VALUES' THEN 'SELECT'
    WHEN 'WITH' THEN coalesce(upper(substring(query_text from '(?i)\\)\\s*(insert|update|delete)\\M')), 'SELECT')
    ELSE 'OTHER' END"""
# FROM that does not introduce a relation: ``extract(epoch FROM x)``, ``substring(s FROM $1)``,
# ``trim(both $1 FROM s)``, ``a IS DISTINCT FROM b`` (constants are ``$n`` in pg_stat_statements).
_NOT_RELATION_FROM = (r"'(?i)\m(extract\s*\(\s*(?:[A-Za-z_]+|\$[0-9]+|''[^'']*'')"
                      r"|(?:substring|trim|overlay)\s*\([^()]*?|distinct)\s+from\M'")
_FROM_TEXT = f"regexp_replace(query_text, {_NOT_RELATION_FROM}, '\\1 ', 'g')"
MAIN_TABLE_SQL = f"""lower(replace(CASE stmt_type
    WHEN 'SELECT' THEN substring({_FROM_TEXT} from '(?i)\\m(?:from|join)\\s+({_RELATION})')
    WHEN 'DELETE' THEN substring({_FROM_TEXT} from '(?i)\\mfrom\\s+({_RELATION})')
    WHEN 'INSERT' THEN substring(query_text from '(?i)\\minto\\s+({_IDENT})')
    WHEN 'UPDATE' THEN substring(query_text from '(?i)\\mupdate\\s+(?:only\\s+)?({_IDENT})')
    END, '"', ''))"""


@dataclass(frozen=True)
class Window:
    """Which part of ``[start, end)`` is read from the hourly rollups: ``[h1, h2)``."""

    target: str
    start: datetime
    end: datetime
    h1: datetime
    h2: datetime

    @property
    def rollup_hours(self) -> int:
        return max(0, int((self.h2 - self.h1) / HOUR))

    def params(self) -> dict[str, Any]:
        return {"target": self.target, "start": self.start, "end": self.end, "h1": self.h1, "h2": self.h2}


def _src(schema: sql.Identifier) -> sql.Composed:
    """Statement rows of the window: rollup hours [h1, h2) plus raw rows of [start, h1) and [h2, end).

    Two separate raw ranges (not one NOT BETWEEN) so that partition pruning and the
    (target, recorded_at) index apply to each."""
    raw = ("SELECT query_id, datname, username, query_text, recorded_at AS bucket, 1 AS samples, calls, total_time,"
           " rows_affected, cache_hits, cache_misses, temp_blocks_written, mean_time AS peak, max_time, spans_reset,"
           " is_remainder FROM {s}.query_performance_metrics WHERE target = %(target)s")
    return sql.SQL(
        "SELECT query_id, datname, username, query_text, hour AS bucket, samples, calls, total_time, rows_affected,"
        " cache_hits, cache_misses, temp_blocks_written, peak_mean_time AS peak, max_time, spans_reset, is_remainder"
        " FROM {s}.query_metrics_hourly WHERE target = %(target)s AND hour >= %(h1)s AND hour < %(h2)s"
        " UNION ALL " + raw + " AND recorded_at >= %(start)s AND recorded_at < least(%(h1)s, %(end)s)"
        " UNION ALL " + raw + " AND recorded_at >= greatest(%(h2)s, %(start)s) AND recorded_at < %(end)s"
    ).format(s=schema)


_STATEMENTS = """
WITH src AS ({src}),
agg AS (
    SELECT query_id, datname, username, min(query_text) AS query_text, sum(samples)::bigint AS samples,
           sum(calls)::bigint AS calls, sum(total_time) AS total_time, sum(rows_affected)::bigint AS rows,
           sum(cache_hits)::bigint AS hits, sum(cache_misses)::bigint AS misses,
           sum(temp_blocks_written)::bigint AS temp_blocks, max(peak) AS peak, max(max_time) AS max_time,
           bool_or(spans_reset) AS spans_reset, bool_or(is_remainder) AS is_remainder
    FROM src GROUP BY query_id, datname, username
),
totals AS (
    SELECT coalesce(sum(calls), 0)::bigint AS calls, coalesce(sum(total_time), 0) AS total_time,
           coalesce(sum(hits), 0)::bigint AS hits, coalesce(sum(misses), 0)::bigint AS misses,
           coalesce(sum(temp_blocks), 0)::bigint AS temp_blocks,
           count(*) FILTER (WHERE NOT is_remainder AND calls > 0) AS statements,
           max(max_time) FILTER (WHERE NOT is_remainder) AS max_time
    FROM agg
),
classified AS (
    SELECT a.*, {main_table} AS main_table
    FROM (SELECT *, {stmt_type} AS stmt_type FROM agg WHERE NOT is_remainder) a
),
ranked AS (
    SELECT c.*, round(c.total_time / nullif(c.calls, 0), 3) AS mean,
           row_number() OVER (ORDER BY c.total_time / nullif(c.calls, 0) DESC NULLS LAST, c.query_id, c.datname, c.username) AS r_mean,
           row_number() OVER (ORDER BY c.total_time DESC, c.query_id, c.datname, c.username) AS r_total,
           row_number() OVER (ORDER BY c.calls DESC, c.total_time DESC, c.query_id, c.datname, c.username) AS r_calls,
           row_number() OVER (ORDER BY c.total_time / nullif(c.calls, 0) ASC NULLS LAST, c.query_id, c.datname, c.username) AS r_fast,
           row_number() OVER (ORDER BY c.temp_blocks DESC, c.query_id, c.datname, c.username) AS r_temp,
           count(*) FILTER (WHERE c.total_time / nullif(c.calls, 0) > %(slow_ms)s) OVER () AS slow_count
    FROM classified c WHERE c.calls > 0
)
SELECT json_build_object(
    'totals', (SELECT row_to_json(t) FROM totals t),
    'remainder', (SELECT json_build_object('calls', sum(calls), 'total_time', sum(total_time))
                  FROM agg WHERE is_remainder),
    'slow_count', (SELECT max(slow_count) FROM ranked),
    'slow', (SELECT json_agg(json_build_object('query_id', query_id, 'mean', mean, 'calls', calls,
                                               'total_time', total_time) ORDER BY r_mean)
             FROM ranked WHERE mean > %(slow_ms)s AND r_mean <= 50),
    'top', (SELECT json_agg(json_build_object(
                'query_id', query_id, 'datname', datname, 'username', username, 'query_text', query_text,
                'statement_type', stmt_type, 'main_table', main_table, 'samples', samples, 'calls', calls,
                'total_time', total_time, 'mean', mean, 'peak', peak, 'max_time', max_time, 'rows', rows,
                'hits', hits, 'misses', misses, 'temp_blocks', temp_blocks, 'spans_reset', spans_reset,
                'r_mean', r_mean, 'r_total', r_total, 'r_calls', r_calls, 'r_fast', r_fast,
                'r_temp', CASE WHEN temp_blocks > 0 THEN r_temp END) ORDER BY r_mean)
            FROM ranked WHERE r_mean <= %(top)s OR r_total <= %(top)s OR r_calls <= %(top)s OR r_fast = 1
                           OR r_temp <= 5),
    'by_type', (SELECT json_agg(x ORDER BY x.total_time DESC, x.statement_type) FROM (
                SELECT stmt_type AS statement_type, count(*) AS statements, sum(calls)::bigint AS calls,
                       sum(total_time) AS total_time FROM classified WHERE calls > 0 GROUP BY stmt_type) x),
    'by_table', (SELECT json_agg(x ORDER BY x.total_time DESC, x.main_table NULLS LAST) FROM (
                SELECT main_table, string_agg(DISTINCT stmt_type, ',' ORDER BY stmt_type) AS statement_types,
                       count(*) AS statements, sum(calls)::bigint AS calls, sum(total_time) AS total_time
                FROM classified WHERE calls > 0 GROUP BY main_table
                ORDER BY sum(total_time) DESC, main_table NULLS LAST LIMIT 15) x)
)
"""

_RESOURCES = """
WITH r AS (
    SELECT *, extract(epoch FROM "timestamp") AS epoch,
           coalesce(xact_rollback, 0) + coalesce(deadlocks, 0) AS errors
    FROM {s}.resource_metrics WHERE target = %(target)s AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
),
latest_disk AS (
    SELECT disk_usage_bytes, disk_total_bytes, disk_usage_percent FROM r
    WHERE disk_usage_bytes IS NOT NULL ORDER BY "timestamp" DESC LIMIT 1
),
latest_size AS (
    SELECT database_size_bytes FROM r WHERE database_size_bytes IS NOT NULL ORDER BY "timestamp" DESC LIMIT 1
)
SELECT json_build_object(
    'samples', count(*), 'up', count(*) FILTER (WHERE pg_up),
    'first', min("timestamp"), 'last', max("timestamp"),
    'median_interval', percentile_cont(0.5) WITHIN GROUP (ORDER BY interval_seconds),
    'commits', sum(xact_commit), 'rollbacks', sum(xact_rollback), 'deadlocks', sum(deadlocks),
    'blks_hit', sum(blks_hit), 'blks_read', sum(blks_read), 'temp_bytes', sum(temp_bytes),
    'cpu', json_build_object('samples', count(cpu_usage_percent), 'avg', round(avg(cpu_usage_percent), 2),
        'max', max(cpu_usage_percent),
        'p95', round((percentile_cont(0.95) WITHIN GROUP (ORDER BY cpu_usage_percent))::numeric, 2),
        'over', count(*) FILTER (WHERE cpu_usage_percent > %(cpu_max)s),
        'trend_per_day', CASE WHEN max(epoch) - min(epoch) >= %(trend_span)s
                              THEN round((regr_slope(cpu_usage_percent, epoch) * 86400)::numeric, 3) END),
    'memory', json_build_object('samples', count(memory_usage_percent), 'avg', round(avg(memory_usage_percent), 2),
        'max', max(memory_usage_percent),
        'p95', round((percentile_cont(0.95) WITHIN GROUP (ORDER BY memory_usage_percent))::numeric, 2),
        'over', count(*) FILTER (WHERE memory_usage_percent > %(mem_max)s),
        'avg_bytes', round(avg(memory_usage_bytes)),
        'trend_per_day', CASE WHEN max(epoch) - min(epoch) >= %(trend_span)s
                              THEN round((regr_slope(memory_usage_percent, epoch) * 86400)::numeric, 3) END),
    'connections', json_build_object('samples', count(connection_count), 'avg', round(avg(connection_count), 2),
        'max', max(connection_count), 'max_connections', max(max_connections),
        'utilization_avg', round(avg(connection_utilization), 2), 'utilization_max', max(connection_utilization),
        'utilization_p95', round((percentile_cont(0.95) WITHIN GROUP (ORDER BY connection_utilization))::numeric, 2),
        'over_warning', count(*) FILTER (WHERE connection_utilization >= %(conn_warn)s)),
    'disk', json_build_object(
        'used_bytes', (SELECT disk_usage_bytes FROM latest_disk),
        'total_bytes', (SELECT disk_total_bytes FROM latest_disk),
        'used_percent', (SELECT disk_usage_percent FROM latest_disk),
        'database_size_bytes', (SELECT database_size_bytes FROM latest_size)),
    'resets', (SELECT json_agg("timestamp" ORDER BY "timestamp") FROM r WHERE statements_reset),
    'server_starts', (SELECT json_agg(DISTINCT server_start_time) FROM r
                      WHERE server_start_time >= %(start)s AND server_start_time < %(end)s),
    'start_times', count(DISTINCT server_start_time),
    'by_hour', (SELECT json_agg(x ORDER BY x.hour) FROM (
        SELECT extract(hour FROM "timestamp")::int AS hour, count(*) AS samples,
               round(avg(connection_count), 2) AS connections_avg, max(connection_count) AS connections_max,
               round(avg(connection_utilization), 2) AS utilization_avg, max(connection_utilization) AS utilization_max
        FROM r GROUP BY 1) x)
) FROM r
"""

_RESOURCE_SERIES = """
SELECT json_agg(x ORDER BY x.t) FROM (
    SELECT to_timestamp(floor(extract(epoch FROM "timestamp") / %(w)s) * %(w)s) AS t,
           round(avg(cpu_usage_percent), 2) AS cpu, round(avg(memory_usage_percent), 2) AS memory,
           round(avg(connection_count), 2) AS connections, max(connection_count) AS connections_max,
           round(avg(connection_utilization), 2) AS utilization,
           sum(coalesce(xact_rollback, 0) + coalesce(deadlocks, 0)) AS errors,
           max(database_size_bytes) AS database_size, max(disk_usage_bytes) AS disk_used,
           bool_and(pg_up) AS up
    FROM {s}.resource_metrics WHERE target = %(target)s AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
    GROUP BY 1) x
"""

_QUERY_SERIES = """
WITH src AS ({src})
SELECT json_agg(x ORDER BY x.t) FROM (
    SELECT to_timestamp(floor(extract(epoch FROM bucket) / %(w)s) * %(w)s) AS t,
           sum(calls)::bigint AS calls, sum(total_time) AS total_time
    FROM src GROUP BY 1) x
"""

_ALERTS = """
SELECT json_build_object(
    'total', (SELECT count(*) FROM a),
    'by_metric', (SELECT json_agg(x ORDER BY x.count DESC, x.metric, x.alertname) FROM (
        SELECT metric, coalesce(labels->>'alertname', metric) AS alertname, max(severity) AS severity,
               count(*) AS count, min(threshold_value) AS threshold, round(avg(current_value), 3) AS current_avg,
               count(*) FILTER (WHERE resolved_at IS NOT NULL AND resolved_at - "timestamp" < interval '10 minutes')
                   AS resolved_within_10m,
               count(*) FILTER (WHERE acknowledged) AS acknowledged
        FROM a GROUP BY metric, coalesce(labels->>'alertname', metric)) x)
)
"""

_ALERTS_CTE = """WITH a AS (SELECT * FROM {s}.performance_alerts WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s
    AND (target = %(target)s OR target IS NULL))"""

# Per statement, the series of interval means (fine) or hourly means (coarse) over the
# baseline period; its median and MAD; and the highest interval mean inside the window.
_STATEMENT_ANOMALIES = """
WITH m AS MATERIALIZED ({points}),
med AS (
    SELECT query_id, db, usr, percentile_cont(0.5) WITHIN GROUP (ORDER BY mean) AS med, count(*) AS n,
           max(peak) FILTER (WHERE bucket >= %(window_bucket)s) AS peak
    FROM m GROUP BY 1, 2, 3 HAVING count(*) >= %(min_points)s
),
-- The factor test first: the MAD (a second pass) is needed only for the few statements that pass it.
-- The LIMIT also tells the planner how few they are, so that it hashes them rather than sorting m again.
cand AS (SELECT * FROM med WHERE med > 0 AND peak / med >= %(factor)s ORDER BY peak / med DESC, query_id LIMIT 50),
mad AS (
    SELECT query_id, db, usr, percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(m.mean - cand.med)) AS mad
    FROM m JOIN cand USING (query_id, db, usr) GROUP BY 1, 2, 3
),
hits AS (
    SELECT cand.*, mad.mad, (cand.peak - cand.med) / greatest(1.4826 * mad.mad, 0.05 * cand.med, 0.01) AS score
    FROM cand JOIN mad USING (query_id, db, usr)
    WHERE %(candidates)s OR (cand.peak - cand.med) / greatest(1.4826 * mad.mad, 0.05 * cand.med, 0.01) > %(z)s
),
at AS (
    SELECT DISTINCT ON (m.query_id, m.db, m.usr) m.query_id, m.db, m.usr, m.bucket, m.total_time, m.calls
    FROM m JOIN hits USING (query_id, db, usr)
    WHERE m.bucket >= %(window_bucket)s AND m.peak = hits.peak
    ORDER BY m.query_id, m.db, m.usr, m.bucket
)
SELECT json_agg(x ORDER BY x.factor DESC, x.query_id) FROM (
    SELECT h.query_id, nullif(h.db, '') AS datname, nullif(h.usr, '') AS username, at.bucket AS at,
           round(h.peak::numeric, 3) AS observed, round(h.med::numeric, 3) AS baseline,
           round(h.mad::numeric, 3) AS mad, h.n AS points, round((h.peak / h.med)::numeric, 1) AS factor,
           round(h.score::numeric, 1) AS score, at.total_time AS bucket_total_time, at.calls AS bucket_calls
    FROM hits h JOIN at USING (query_id, db, usr)
    ORDER BY h.peak / h.med DESC, h.query_id LIMIT %(limit)s
) x
"""
# The hourly points of the candidates (query_id, db, usr) of _STATEMENT_ANOMALIES, for the
# seasonal baselines: epoch seconds, mean, peak, total time and calls of each hour.
_CANDIDATE_POINTS = """
WITH m AS ({points})
SELECT m.query_id, m.db, m.usr, extract(epoch FROM m.bucket)::float8, m.mean, m.peak, m.total_time::float8,
       m.calls::float8
FROM m JOIN unnest(%(ids)s::text[], %(dbs)s::text[], %(usrs)s::text[]) AS c(query_id, db, usr)
     USING (query_id, db, usr)
ORDER BY 1, 2, 3, 4
"""

# The points of each statement's series: (query_id, db, usr, bucket, calls, total_time, peak, mean).
# coalesce: plain equality in the joins lets them hash (IS NOT DISTINCT FROM cannot).
_RAW_POINTS = """
    SELECT query_id, coalesce(datname, '') AS db, coalesce(username, '') AS usr, recorded_at AS bucket, calls,
           total_time, mean_time::float8 AS peak, mean_time::float8 AS mean
    FROM {s}.query_performance_metrics
    WHERE target = %(target)s AND recorded_at >= %(baseline_start)s AND recorded_at < %(end)s
      AND NOT is_remainder AND calls > 0
"""
# Hourly: rollup rows are one point per statement and hour already; raw rows of the partial
# hours at either end are summed into hours here.
_HOURLY_POINTS = """
    SELECT query_id, coalesce(datname, '') AS db, coalesce(username, '') AS usr, hour AS bucket, calls, total_time,
           peak_mean_time::float8 AS peak, (total_time / calls)::float8 AS mean
    FROM {s}.query_metrics_hourly
    WHERE target = %(target)s AND hour >= %(h1)s AND hour < %(h2)s AND NOT is_remainder AND calls > 0
    UNION ALL
    SELECT query_id, coalesce(datname, ''), coalesce(username, ''), date_trunc('hour', recorded_at), sum(calls),
           sum(total_time), max(mean_time)::float8, (sum(total_time) / sum(calls))::float8
    FROM {s}.query_performance_metrics
    WHERE target = %(target)s AND NOT is_remainder AND calls > 0
      AND ((recorded_at >= %(start)s AND recorded_at < least(%(h1)s, %(end)s))
           OR (recorded_at >= greatest(%(h2)s, %(start)s) AND recorded_at < %(end)s))
    GROUP BY 1, 2, 3, 4
"""

# The text of the statements found (a handful), looked up after the heavy query so that it
# does not carry every row's text.
_STATEMENT_TEXTS = """
SELECT DISTINCT ON (query_id) query_id, query_text FROM {s}.query_performance_metrics
WHERE target = %(target)s AND query_id = ANY(%(ids)s) AND recorded_at >= %(start)s AND recorded_at < %(end)s
ORDER BY query_id, recorded_at DESC
"""

# Resource series: every sample of the baseline period (the window included), judged hour by
# hour in anomalies.py against the same hour of other days, or the period's median and MAD.
_RESOURCE_SAMPLES = """
SELECT extract(epoch FROM "timestamp")::float8, cpu_usage_percent::float8, memory_usage_percent::float8,
       connection_count::float8
FROM {s}.resource_metrics
WHERE target = %(target)s AND "timestamp" >= %(baseline_start)s AND "timestamp" < %(end)s
ORDER BY "timestamp"
"""
RESOURCE_SERIES = ("cpu", "memory", "connections")


# Forecast histories: every resource sample of the history, thinned beyond this many (the
# first sample of each slot of span / FORECAST_MAX_SAMPLES seconds): a month of one-minute
# samples is read whole, a month of one-second samples one sample in 26.
FORECAST_MAX_SAMPLES = 100_000
_HISTORY_SPAN = """
SELECT count(*), extract(epoch FROM max("timestamp") - min("timestamp"))::float8 FROM {s}.resource_metrics
WHERE target = %(target)s AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
"""
_RESOURCE_HISTORY = """
SELECT extract(epoch FROM "timestamp")::float8, disk_usage_bytes::float8, disk_total_bytes::float8,
       database_size_bytes::float8, connection_count::float8, max_connections::float8, xid_age::float8
FROM (SELECT DISTINCT ON (floor(extract(epoch FROM "timestamp") / %(slot)s)) *
      FROM {s}.resource_metrics
      WHERE target = %(target)s AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
      ORDER BY floor(extract(epoch FROM "timestamp") / %(slot)s), "timestamp") x
ORDER BY "timestamp"
"""
# A statement's mean time per UTC hour (all its databases and users): the rollups for the
# complete hours, the raw rows summed per hour for the rest (as _HOURLY_POINTS).
_STATEMENT_HISTORY = """
SELECT query_id, extract(epoch FROM hour)::float8, (sum(total_time) / sum(calls))::float8
FROM (
    SELECT query_id, hour, calls, total_time FROM {s}.query_metrics_hourly
    WHERE target = %(target)s AND query_id = ANY(%(ids)s) AND hour >= %(h1)s AND hour < %(h2)s AND NOT is_remainder
    UNION ALL
    SELECT query_id, to_timestamp(floor(extract(epoch FROM recorded_at) / 3600) * 3600), calls, total_time
    FROM {s}.query_performance_metrics
    WHERE target = %(target)s AND query_id = ANY(%(ids)s) AND NOT is_remainder
      AND ((recorded_at >= %(start)s AND recorded_at < least(%(h1)s, %(end)s))
           OR (recorded_at >= greatest(%(h2)s, %(start)s) AND recorded_at < %(end)s))
) u
GROUP BY 1, 2 HAVING sum(calls) > 0
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class ResourceHistory:
    """The resource samples of a forecast's history, column by column (epoch seconds; NaN
    where a sample lacks the figure)."""

    t: FloatArray
    disk_used: FloatArray
    disk_total: FloatArray
    database_size: FloatArray
    connections: FloatArray
    max_connections: FloatArray
    xid_age: FloatArray


def _bucket_width(start: datetime, end: datetime) -> int:
    span = (end - start).total_seconds()
    for width in BUCKETS:
        if span / width <= MAX_POINTS:
            return width
    return BUCKETS[-1]


def _num(value: Any, digits: int = 3) -> float | None:
    if value is None:
        return None
    return round(float(value), digits)


def _pct(part: float, whole: float, digits: int = 2) -> float | None:
    return round(100.0 * part / whole, digits) if whole else None


@dataclass(frozen=True)
class StatementSeries:
    """A statement's hourly points over the baseline period (epoch seconds of each hour)."""

    t: FloatArray
    mean: FloatArray
    peak: FloatArray
    total_time: FloatArray
    calls: FloatArray


@dataclass(frozen=True)
class AnomalyInputs:
    """Raw material of the anomaly detector (anomalies.py decides).

    ``statements`` are rows of ``_STATEMENT_ANOMALIES``: the statements whose peak in the
    window reaches the spike factor against their median over the baseline period. At the
    ``sample`` resolution they are those the global rule flags; at the ``hour`` resolution
    every such candidate, with its hourly points in ``statement_series`` (keyed by query id,
    database and user, ``""`` for none) for the seasonal baselines. ``resources`` holds each
    resource series over the baseline period, the window included: epoch seconds and values."""

    baseline_start: datetime
    resolution: str  # "sample" or "hour"
    statements: list[dict[str, Any]]
    resources: dict[str, tuple[FloatArray, FloatArray]]
    window_start: datetime
    end: datetime
    statement_series: dict[tuple[str, str, str], StatementSeries] = field(default_factory=dict)


class ReportQueries:
    """Runs the report's SQL against the store (one connection, read only)."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str, settings: ReportSettings) -> None:
        self.conn = conn
        self.schema = sql.Identifier(schema)
        self.schema_name = schema
        self.settings = settings

    # -- window --------------------------------------------------------------------------

    def window(self, target: str, start: datetime, end: datetime) -> Window:
        """The part of [start, end) whose hours are complete in the rollup table."""
        row = self.conn.execute(sql.SQL("SELECT rolled_until FROM {}.query_rollup_state WHERE target = %s").format(
            self.schema), (target,)).fetchone()
        h1 = floor_hour(start)
        if h1 < start:
            h1 += HOUR
        h2 = floor_hour(end)
        if row is not None:
            h2 = min(h2, row[0])
        if row is None or h2 <= h1:
            h1 = h2 = start  # nothing from rollups: every row is raw
        return Window(target, start, end, h1, h2)

    def _json(self, query: sql.Composed, params: dict[str, Any]) -> Any:
        row = self.conn.execute(query, params).fetchone()
        if row is None or row[0] is None:
            return None
        value = row[0]
        # psycopg loads json as Python objects already; keep a str fallback for safety.
        return json.loads(value) if isinstance(value, str) else value

    # -- parts ---------------------------------------------------------------------------

    def statements(self, w: Window) -> dict[str, Any]:
        query = sql.SQL(_STATEMENTS).format(src=_src(self.schema), stmt_type=sql.SQL(STATEMENT_TYPE_SQL),
                                            main_table=sql.SQL(MAIN_TABLE_SQL))
        out = self._json(query, {**w.params(), "top": self.settings.top_n,
                                 "slow_ms": self.settings.thresholds.slow_query_time_ms})
        return dict(out or {})

    def resources(self, w: Window) -> dict[str, Any]:
        t = self.settings.thresholds
        params = {**w.params(), "cpu_max": t.cpu_usage_max_percent, "mem_max": t.memory_usage_max_percent,
                  "conn_warn": t.connection_utilization_warning_percent, "trend_span": TREND_MIN_SPAN}
        return dict(self._json(sql.SQL(_RESOURCES).format(s=self.schema), params) or {})

    def series(self, w: Window) -> tuple[int, list[dict[str, Any]]]:
        """Chart points: resource averages and statement throughput per bucket."""
        width = _bucket_width(w.start, w.end)
        params = {**w.params(), "w": width}
        resources = self._json(sql.SQL(_RESOURCE_SERIES).format(s=self.schema), params) or []
        if width < 3600:
            # Rollup rows sit at the start of their hour: narrower buckets read raw rows only.
            params.update(h1=w.start, h2=w.start)
        queries = self._json(sql.SQL(_QUERY_SERIES).format(src=_src(self.schema)), params) or []
        by_t: dict[str, dict[str, Any]] = {}
        for point in resources:
            by_t[point["t"]] = {"t": point["t"], **{k: v for k, v in point.items() if k != "t"}}
        for point in queries:
            entry = by_t.setdefault(point["t"], {"t": point["t"]})
            calls = int(point["calls"] or 0)
            entry["queries_per_second"] = round(calls / width, 3)
            entry["mean_time_ms"] = round(float(point["total_time"]) / calls, 3) if calls else None
        points = []
        for key in sorted(by_t):
            p = by_t[key]
            points.append({
                "t": iso(datetime.fromisoformat(p["t"])),
                "cpu_percent": _num(p.get("cpu"), 2), "memory_percent": _num(p.get("memory"), 2),
                "connections": _num(p.get("connections"), 2), "connections_max": p.get("connections_max"),
                "connection_utilization_percent": _num(p.get("utilization"), 2),
                "errors": p.get("errors"), "database_size_bytes": p.get("database_size"),
                "disk_used_bytes": p.get("disk_used"), "up": p.get("up"),
                "queries_per_second": p.get("queries_per_second"), "mean_time_ms": p.get("mean_time_ms"),
            })
        return width, points

    def insight(self, w: Window, query_ids: Sequence[int]) -> tuple[dict[int, dict[str, float]], list[IndexAdvice]]:
        """Query insight's part: the statements' wait seconds per wait event type in the
        window, and the target's index advice as it stands (its tables of migration 004)."""
        waits = wait_seconds(self.conn, self.schema_name, w.target, query_ids, since=w.start, until=w.end)
        return waits, read_advice(self.conn, self.schema_name, w.target)

    def alerts(self, w: Window) -> dict[str, Any]:
        query = sql.SQL(_ALERTS_CTE + _ALERTS).format(s=self.schema)
        return dict(self._json(query, w.params()) or {"total": 0, "by_metric": None})

    def first_sample(self, target: str) -> datetime | None:
        row = self.conn.execute(sql.SQL(
            'SELECT min("timestamp") FROM {}.resource_metrics WHERE target = %s').format(self.schema), (target,)).fetchone()
        return row[0] if row else None

    def top_statements(self, target: str, start: datetime, end: datetime, limit: int) -> list[str]:
        """The query ids of the *limit* statements with the most execution time in ``[start, end)``."""
        if limit <= 0:
            return []
        query = sql.SQL("WITH src AS ({src}) SELECT query_id FROM src WHERE NOT is_remainder GROUP BY query_id"
                        " HAVING sum(calls) > 0 ORDER BY sum(total_time) DESC, query_id LIMIT %(limit)s"
                        ).format(src=_src(self.schema))
        rows = self.conn.execute(query, {**self.window(target, start, end).params(), "limit": limit}).fetchall()
        return [str(r[0]) for r in rows]

    def resource_history(self, target: str, start: datetime, end: datetime) -> ResourceHistory:
        """The resource samples of ``[start, end)`` for forecasts (see FORECAST_MAX_SAMPLES)."""
        params: dict[str, Any] = {"target": target, "start": start, "end": end}
        span = self.conn.execute(sql.SQL(_HISTORY_SPAN).format(s=self.schema), params).fetchone()
        count, seconds = (int(span[0]), float(span[1] or 0.0)) if span else (0, 0.0)
        # Below the bound, a slot narrower than any sampling interval keeps every sample.
        slot = seconds / FORECAST_MAX_SAMPLES if count > FORECAST_MAX_SAMPLES else 1e-3
        rows = self.conn.execute(sql.SQL(_RESOURCE_HISTORY).format(s=self.schema), {**params, "slot": slot}).fetchall()
        columns = np.array(rows, dtype=np.float64).reshape(len(rows), 7).T if rows else np.empty((7, 0))
        return ResourceHistory(*(np.ascontiguousarray(c) for c in columns))

    def statement_history(self, target: str, query_ids: Sequence[str], start: datetime,
                          end: datetime) -> dict[str, tuple[FloatArray, FloatArray]]:
        """Per query id, its mean time (ms) per hour of ``[start, end)``: epoch seconds and values."""
        if not query_ids:
            return {}
        w = self.window(target, start, end)
        rows = self.conn.execute(sql.SQL(_STATEMENT_HISTORY).format(s=self.schema),
                                 {**w.params(), "ids": list(query_ids)}).fetchall()
        out: dict[str, tuple[FloatArray, FloatArray]] = {}
        for qid in query_ids:
            mine = [(r[1], r[2]) for r in rows if r[0] == qid]
            points = np.array(mine, dtype=np.float64).reshape(len(mine), 2)
            out[qid] = (np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1]))
        return out

    def anomaly_inputs(self, target: str, start: datetime, end: datetime) -> AnomalyInputs:
        """Raw material of the anomaly detector (see anomalies.py for the decisions)."""
        first = self.first_sample(target)
        baseline_start = start - timedelta(days=self.settings.baseline_days)
        if first is not None:
            baseline_start = max(baseline_start, min(first, start))
        fine = end - baseline_start <= FINE_ANOMALY_SPAN
        bw = self.window(target, baseline_start, end)
        points = sql.SQL(_RAW_POINTS if fine else _HOURLY_POINTS).format(s=self.schema)
        params = {**bw.params(), "min_points": MIN_BASELINE_POINTS,
                  "window_bucket": start if fine else floor_hour(start),
                  "factor": self.settings.thresholds.query_spike_factor,
                  "z": self.settings.anomaly_z, "baseline_start": baseline_start}
        # At the hour's resolution every candidate is judged in anomalies.py (the seasonal
        # baselines need its points); at the sample's the global rule decides here.
        params.update(candidates=not fine, limit=20 if fine else 50)
        statements = self._json(sql.SQL(_STATEMENT_ANOMALIES).format(points=points), params) or []
        series: dict[tuple[str, str, str], StatementSeries] = {}
        if statements and not fine:
            keys = [(row["query_id"], row["datname"] or "", row["username"] or "") for row in statements]
            rows = self.conn.execute(sql.SQL(_CANDIDATE_POINTS).format(points=points), {
                **params, "ids": [k[0] for k in keys], "dbs": [k[1] for k in keys],
                "usrs": [k[2] for k in keys]}).fetchall()
            for key in keys:
                mine = np.array([r[3:] for r in rows if (r[0], r[1], r[2]) == key], dtype=np.float64).reshape(-1, 5)
                series[key] = StatementSeries(*(np.ascontiguousarray(c) for c in mine.T))
        if statements:
            texts = dict(self.conn.execute(sql.SQL(_STATEMENT_TEXTS).format(s=self.schema), {
                "target": target, "ids": [row["query_id"] for row in statements],
                "start": floor_hour(start) - HOUR, "end": end}).fetchall())
            for row in statements:
                row["query_text"] = texts.get(row["query_id"])
        samples = self.conn.execute(sql.SQL(_RESOURCE_SAMPLES).format(s=self.schema), {
            "target": target, "end": end, "baseline_start": baseline_start}).fetchall()
        columns = np.array(samples, dtype=np.float64).reshape(len(samples), 4).T
        resources = {}
        for name, values in zip(RESOURCE_SERIES, columns[1:], strict=True):
            known = np.isfinite(values)
            if int(known.sum()) >= MIN_BASELINE_POINTS:
                resources[name] = (np.ascontiguousarray(columns[0][known]), np.ascontiguousarray(values[known]))
        return AnomalyInputs(baseline_start, "sample" if fine else "hour", statements, resources, start, end, series)
