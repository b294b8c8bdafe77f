"""The Query performance dashboard (queries.json): pg_stat_statements' costliest statements,
time per database and user, slow and long-running queries, and the drill-down into one
statement (variable ``queryid``) with its text and history from the sample store."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as model

from ._panels import (
    BY,
    DB,
    GREEN,
    ORANGE,
    PROFILE,
    RED,
    WHO,
    Board,
    Sql,
    above,
    bars,
    below,
    grid,
    legend,
    limit,
    link,
    live,
    prom,
    series,
    sql_filter,
    to_dashboard,
)

__all__ = ["dashboard"]

STATEMENT = f"{BY}, datname, user, queryid"
STATEMENT_LEGEND = "{{queryid}} {{datname}}/{{user}} ({{instance}} {{target}})"


def _per_statement(metric: str) -> str:
    return f"sum by ({STATEMENT}) (increase({metric}{{{DB}}}[$__range]))"


MEAN_RANGE = f"{_per_statement('pg_stat_statements_seconds_total')} / ({_per_statement('pg_stat_statements_calls_total')} > 0)"
HIT_RANGE = (f"{_per_statement('pg_stat_statements_shared_blocks_hit_total')} / (("
             f"{_per_statement('pg_stat_statements_shared_blocks_hit_total')} + "
             f"{_per_statement('pg_stat_statements_shared_blocks_read_total')}) > 0)")
ONE = f'{DB}, queryid="$queryid"'


def dashboard() -> model.Dashboard:
    board = Board("pgperf-queries", "pgperf / Query performance",
                  "pg_stat_statements: the statements that cost most, time per database and user, slow and "
                  "long-running queries, and a drill-down into one statement with its text and history from "
                  "the store.", sql=True)
    board.query_variable("queryid", f"label_values(pg_stat_statements_calls_total{{{DB}}}, queryid)",
                         "Statement of the drill-down (pgperf serves per-queryid series for the top N statements)",
                         multi=False)
    board.annotation("Query time spikes",
                     f'ALERTS{{alertname="PgperfQueryTimeSpike", alertstate="firing", {ONE}}}', RED)
    drill = [link("Drill down into ${__field.labels.queryid}",
                   to_dashboard("pgperf-queries", datname="${__field.labels.datname}",
                                 queryid="${__field.labels.queryid}"))]
    board.row(
        "Top statements over the time range",
        grid("Statements", "Every statement pgperf serves per queryid (the top N by time, slow statements always "
             "included), over the dashboard's time range. Click a queryid for its drill-down.", "short", [
                 prom(_per_statement("pg_stat_statements_seconds_total"), instant=True, table_format=True),
                 prom(_per_statement("pg_stat_statements_calls_total"), instant=True, table_format=True),
                 prom(MEAN_RANGE, instant=True, table_format=True),
                 prom(_per_statement("pg_stat_statements_rows_total"), instant=True, table_format=True),
                 prom(HIT_RANGE, instant=True, table_format=True),
             ], merge=True, hide=["Time", "job"], h=10, sort=("Total time", True),
             rename={"Value #A": "Total time", "Value #B": "Calls", "Value #C": "Mean time", "Value #D": "Rows",
                     "Value #E": "Cache hit ratio"},
             columns={"Total time": {"unit": "s"}, "Calls": {"unit": "short"}, "Mean time": {"unit": "s"},
                      "Rows": {"unit": "short"},
                      "Cache hit ratio": {"unit": "percentunit", "color": [(None, RED), (limit("cache_hit_ratio_min"), GREEN)]},
                      "queryid": {"links": [link("Drill down into ${__value.raw}", to_dashboard(
                          "pgperf-queries", datname="${__data.fields.datname}", queryid="${__value.raw}"))]}}),
        bars("Top 10 by total time", "Statements that spent the most execution time over the time range.", "s",
             [prom(f"topk(10, {_per_statement('pg_stat_statements_seconds_total')})", STATEMENT_LEGEND, instant=True)],
             links=drill),
        bars("Top 10 by mean time", "Statements with the highest mean time per call over the time range. Orange from "
             f"a tenth of the slow-query threshold of the {PROFILE} profile, red from the threshold.", "s",
             [prom(f"topk(10, {MEAN_RANGE})", STATEMENT_LEGEND, instant=True)], links=drill,
             steps=[(None, GREEN), (limit("slow_query_time_ms") / 10, ORANGE), (limit("slow_query_time_ms"), RED)]),
        bars("Top 10 by calls", "Statements executed most often over the time range.", "short",
             [prom(f"topk(10, {_per_statement('pg_stat_statements_calls_total')})", STATEMENT_LEGEND, instant=True)],
             links=drill),
        bars("Top 10 by rows", "Statements that returned or affected the most rows over the time range.", "short",
             [prom(f"topk(10, {_per_statement('pg_stat_statements_rows_total')})", STATEMENT_LEGEND, instant=True)],
             links=drill),
        bars("Lowest cache hit ratio", "Statements with the lowest share of shared-buffer hits over the time range. "
             f"Red under the minimum of the {PROFILE} profile.", "percentunit",
             [prom(f"bottomk(10, {HIT_RANGE})", STATEMENT_LEGEND, instant=True)], links=drill,
             steps=below("cache_hit_ratio_min"), max_val=1),
        bars("Top 10 by block read time", "Statements that spent the most time reading blocks (needs "
             "track_io_timing).", "s",
             [prom(f"topk(10, {_per_statement('pg_stat_statements_block_read_seconds_total')})", STATEMENT_LEGEND,
                   instant=True)], links=drill),
    )
    board.row(
        "Time per database and user",
        series("Execution time per database", "Seconds of statement execution per second, all statements of each "
               "database (1 = one backend busy all the time).", "s",
               [prom(f"sum by ({BY}, datname) (rate(pg_stat_statements_all_seconds_total{{{DB}}}[$__rate_interval]))",
                     legend("datname"))], stack=True, w=8),
        series("Execution time per user", "Seconds of statement execution per second, all statements of each user.",
               "s", [prom(f"sum by ({BY}, user) (rate(pg_stat_statements_all_seconds_total{{{DB}}}[$__rate_interval]))",
                          legend("user"))], stack=True, w=8),
        series("Calls per database", "Statement executions per second in each database.", "ops",
               [prom(f"sum by ({BY}, datname) (rate(pg_stat_statements_all_calls_total{{{DB}}}[$__rate_interval]))",
                     legend("datname"))], stack=True, w=8),
        series("Slowest statement", "Highest mean time of a statement in each sampling interval. Dashed: the "
               "slow-query threshold of each instance (pgperf_threshold_slow_query_seconds); PgperfSlowQueries fires "
               "above it.", "s",
               [prom(f"max by ({BY}, datname) (pg_stat_statements_slowest_mean_seconds{{{DB}}})", legend("datname"))],
               lines=[prom(live("slow_query_time_ms"), "{{instance}} slow-query threshold")],
               steps=above("slow_query_time_ms"), w=8),
        series("Slow statements", "Statements over the slow-query threshold in the last sampling interval. Dashed: "
               "the count from which PgperfSlowQueries is an error (pgperf_threshold_slow_statements_error).", "short",
               [prom(f"sum by ({BY}) (pg_stat_statements_slow_statements{{{DB}}})", WHO)],
               lines=[prom(live("slow_queries_error_count"), "{{instance}} error from")], min_val=0, w=8),
        series("Longest-running query", "Run time of the longest active client query in each database. Dashed: the "
               "long-running threshold (pgperf_threshold_long_running_query_seconds).", "s",
               [prom(f"pg_stat_activity_oldest_query_age_seconds{{{DB}}}", legend("datname"))],
               lines=[prom(live("long_running_query_seconds"), "{{instance}} long-running from")], min_val=0, w=8),
    )
    target_filter = sql_filter("target", "target")
    board.row(
        "Statement $queryid",
        grid("Query text", "The statement's text as stored by pgperf (query_performance_metrics), per server, "
             "database and user, with the last time it ran.", "none", [Sql(f"""
                 SELECT DISTINCT ON (target, datname, username)
                        target, datname, username, recorded_at AS last_seen, query_text
                   FROM query_performance_metrics
                  WHERE query_id = '$queryid'
                    AND {target_filter}
                    AND {sql_filter("datname", "datname")}
                  ORDER BY target, datname, username, recorded_at DESC
             """)], h=6, columns={"query_text": {"width": 900}}),
        series("Mean time and its baseline", "Mean time per call of the statement (rate of seconds over rate of "
               "calls), its 1-day baseline (the recording rule PgperfQueryTimeSpike compares with) and, dashed, the "
               "spike threshold: baseline × pgperf_threshold_query_spike_factor. Red points: anomalies, where the "
               "5-minute mean is over the spike threshold. The baseline needs Prometheus history older than five "
               "minutes.", "s", [
                   prom(f"sum by ({BY}, datname, user) (rate(pg_stat_statements_seconds_total{{{ONE}}}[$__rate_interval])) / "
                        f"(sum by ({BY}, datname, user) (rate(pg_stat_statements_calls_total{{{ONE}}}[$__rate_interval])) > 0)",
                        f"mean {{{{datname}}}}/{{{{user}}}} ({WHO})"),
                   prom(f"queryid:pg_stat_statements_mean_seconds:rate1d{{{ONE}}}", "1-day baseline {{datname}}/{{user}}"),
               ],
               lines=[prom(f"queryid:pg_stat_statements_mean_seconds:rate1d{{{ONE}}} * on (job, instance, target) group_left "
                           f"{live('query_spike_factor')}", "spike threshold {{datname}}/{{user}}")],
               marks=[prom(f"queryid:pg_stat_statements_mean_seconds:rate5m{{{ONE}}} > "
                           f"queryid:pg_stat_statements_mean_seconds:rate1d{{{ONE}}} * on (job, instance, target) group_left "
                           f"{live('query_spike_factor')}", "anomaly {{datname}}/{{user}}")], min_val=0, w=12),
        series("Calls per second", "Executions of the statement per second.", "ops",
               [prom(f"sum by ({BY}, datname, user) (rate(pg_stat_statements_calls_total{{{ONE}}}[$__rate_interval]))",
                     f"{{{{datname}}}}/{{{{user}}}} ({WHO})")], min_val=0, w=12),
        series("Mean time per sampling interval (store)", "Mean time per call in each sampling interval, from the "
               "store (query_performance_metrics): history beyond Prometheus' retention.", "s", [Sql(f"""
                 SELECT $__timeGroupAlias(recorded_at, $__interval),
                        sum(total_time) / nullif(sum(calls), 0) / 1000.0 AS "mean time"
                   FROM query_performance_metrics
                  WHERE $__timeFilter(recorded_at)
                    AND query_id = '$queryid'
                    AND {target_filter}
                    AND {sql_filter("datname", "datname")}
                  GROUP BY 1
                  ORDER BY 1
             """, "time_series")], min_val=0, w=12),
        grid("Sampling intervals (store)", "The statement's rows in the store, newest first: each sampling "
             "interval's calls, time, rows and cache hits. spans_reset: pg_stat_statements was reset during the "
             "interval.", "short", [Sql(f"""
                 SELECT recorded_at AS "time", target, datname, username, calls,
                        total_time / 1000.0 AS total_time, mean_time / 1000.0 AS mean_time,
                        rows_affected,
                        cache_hits::float8 / nullif(cache_hits + cache_misses, 0) AS cache_hit_ratio,
                        spans_reset
                   FROM query_performance_metrics
                  WHERE $__timeFilter(recorded_at)
                    AND query_id = '$queryid'
                    AND {target_filter}
                    AND {sql_filter("datname", "datname")}
                  ORDER BY recorded_at DESC
                  LIMIT 500
             """)], w=12,
             columns={"total_time": {"unit": "s"}, "mean_time": {"unit": "s"}, "cache_hit_ratio": {"unit": "percentunit"}}),
    )
    return board.build()
