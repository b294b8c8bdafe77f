"""The pgperf itself dashboard (self.json): the exporter's own health, its sampling, the
sample store's writes and spool, the process."""

from __future__ import annotations

from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from ._panels import BY, DB, GREEN, RED, SEL, WHO, Board, grid, legend, profile_interval, prom, series, single

__all__ = ["dashboard"]


def dashboard() -> model.Dashboard:
    board = Board("pgperf-self", "pgperf / pgperf itself",
                  "The exporter's own health: scrapes, sampling time per collector, collector errors, the "
                  "sample store's writes, spool and dropped samples.", refresh="30s")
    board.row(
        "Exporter",
        single("Exporter up", "Whether Prometheus could scrape pgperf (up).", "none",
               [prom('up{job=~"$job", instance=~"$instance"}', "{{instance}}", instant=True)],
               mappings={"0": ("down", RED), "1": ("up", GREEN)}, steps=[(None, RED), (1, GREEN)]),
        single("Last sample", "Time since pgperf's last sample. Red after three sampling intervals "
               "(PgperfExporterStale).", "s",
               [prom(f"time() - pgperf_last_sample_timestamp_seconds{{{SEL}}}", WHO, instant=True)],
               steps=[(None, GREEN), (3 * profile_interval(), RED)]),
        single("Sampling interval", "Configured sampling interval.", "s",
               [prom(f"pgperf_sampling_interval_seconds{{{SEL}}}", WHO, instant=True)]),
        single("Profile", "Configuration profile of each exporter.", "none",
               [prom('pgperf_profile_info{job=~"$job", instance=~"$instance"}', "{{profile}} ({{instance}})",
                     instant=True)], text_mode=common.BigValueTextMode.NAME),
        single("pgperf version", "pgperf version of each exporter.", "none",
               [prom('pgperf_build_info{job=~"$job", instance=~"$instance"}', "{{version}} ({{instance}})",
                     instant=True)], text_mode=common.BigValueTextMode.NAME),
        single("Store", "Whether the last write to the sample store succeeded.", "none",
               [prom('pgperf_store_up{job=~"$job", instance=~"$instance"}', "{{instance}}", instant=True)],
               mappings={"0": ("down", RED), "1": ("up", GREEN)}, steps=[(None, RED), (1, GREEN)]),
    )
    board.row(
        "Sampling",
        series("Sampling duration", "Time each sample took, all collectors included. Dashed: the sampling interval; "
               "a sample longer than it skips the next tick (an overrun).", "s",
               [prom(f"pgperf_sampling_duration_seconds{{{SEL}}}", WHO)],
               lines=[prom(f"pgperf_sampling_interval_seconds{{{SEL}}}", f"{WHO} interval")], min_val=0),
        series("Sampling duration per collector", "Time each collector took in each sample (database-scoped "
               "collectors: the sum over databases).", "s",
               [prom(f"pg_scrape_collector_duration_seconds{{{SEL}}}", legend("collector"))],
               stack=True, min_val=0),
        series("Collector errors", "Collectors that failed in the last sample, and failures per rate interval by "
               "collector (timeouts, query errors: PgperfCollectorFailing).", "short", [
                   prom(f"sum by ({BY}) (1 - pg_scrape_collector_success{{{SEL}}})", f"{WHO} failing now"),
                   prom(f"sum by ({BY}, collector) (increase(pgperf_collector_errors_total{{{SEL}}}[$__rate_interval]))",
                        f"{{{{collector}}}} errors ({WHO})"),
               ], bars=True, min_val=0, w=8),
        series("Sampling overruns", "Sampling ticks skipped per rate interval because the previous sample was still "
               "running (PgperfSamplingOverruns).", "short",
               [prom(f"increase(pgperf_sampling_overruns_total{{{SEL}}}[$__rate_interval])", WHO)],
               bars=True, min_val=0, w=8),
        series("Database visits", "Whether database-scoped collectors could connect to each database (1) or not (0).",
               "short", [prom(f"pgperf_database_visit_success{{{DB}}}", legend("datname"))],
               min_val=0, max_val=1, w=8),
        grid("Disabled collectors", "Collectors disabled on a server, with the reason (docs/metrics.md, "
             "PgperfCollectorDisabled).", "none",
             [prom(f"pgperf_collector_disabled{{{SEL}}} == 1", instant=True, table_format=True)],
             hide=["Time", "Value", "__name__"], h=5),
    )
    store = 'job=~"$job", instance=~"$instance"'
    board.row(
        "Store",
        series("Store write time", "Time the last sample took to write to the store (one transaction, COPY).", "s",
               [prom(f"pgperf_store_write_duration_seconds{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("Rows written", "Rows written to the store per second, by table.", "ops",
               [prom(f"sum by (job, instance, table) (rate(pgperf_store_rows_written_total{{{store}}}[$__rate_interval]))",
                     "{{table}} ({{instance}})")], stack=True, min_val=0, w=8),
        series("Spool depth", "Samples waiting in the on-disk spool while the store is unreachable or behind.",
               "short", [prom(f"pgperf_store_spool_samples{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("Spool size", "Size of the on-disk spool; at store.spool_max_bytes the oldest samples are dropped.",
               "bytes", [prom(f"pgperf_store_spool_bytes{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("Dropped and rejected samples", "Samples dropped at the spool's bound and samples the store refused "
               "(kept in the spool's rejected/ directory), per rate interval.", "short", [
                   prom(f"increase(pgperf_store_spool_dropped_samples_total{{{store}}}[$__rate_interval])",
                        "dropped ({{instance}})"),
                   prom(f"increase(pgperf_store_rejected_samples_total{{{store}}}[$__rate_interval])",
                        "rejected ({{instance}})"),
               ], bars=True, min_val=0, w=8),
        series("Store errors", "Whether the store is unreachable now, and failed attempts to reach or write it per "
               "rate interval, by kind of error.", "short", [
                   prom(f"1 - pgperf_store_up{{{store}}}", "unreachable ({{instance}})"),
                   prom(f"sum by (job, instance, kind) (increase(pgperf_store_errors_total{{{store}}}[$__rate_interval]))",
                        "{{kind}} ({{instance}})"),
               ], bars=True, min_val=0, w=8),
    )
    board.row(
        "Process",
        series("Scrape duration", "Time Prometheus took to scrape pgperf (served from memory, no database round "
               "trip).", "s", [prom(f"scrape_duration_seconds{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("Memory", "Resident memory of the pgperf process.", "bytes",
               [prom(f"process_resident_memory_bytes{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("CPU", "CPU seconds per second used by the pgperf process.", "s",
               [prom(f"rate(process_cpu_seconds_total{{{store}}}[$__rate_interval])", "{{instance}}")], min_val=0, w=8),
    )
    return board.build()
