"""``pgperf check``: can pgperf monitor this server, and if not, the exact fix.

Checks, per target: the connection, the server version, whether the role can read every
session's statistics (superuser, ``pg_monitor`` or ``pg_read_all_stats``), whether
pg_stat_statements is preloaded and created, ``track_io_timing``, then runs every enabled
collector once. Exit status 0 when every required check passes, 1 otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from . import collectors
from .collectors import CollectContext, CollectorDisabled, TextCache
from .config import Config
from .db import ConnectionFailed, SessionSettings, connect, detect_server, is_local

OK, WARN, FAIL = "ok", "warn", "FAIL"


def _line(out: Callable[[str], None], status: str, text: str) -> None:
    out(f"  [{status:>4}] {text}")


def check_target(name: str, dsn: str, config: Config, out: Callable[[str], None]) -> bool:
    """Run the checks for one target; return True when monitoring will work."""
    ok = True
    conn_cfg = config.connection
    settings = SessionSettings(
        connect_timeout=conn_cfg.connect_timeout,
        statement_timeout=conn_cfg.statement_timeout,
        lock_timeout=conn_cfg.lock_timeout,
        idle_in_transaction_session_timeout=conn_cfg.idle_in_transaction_session_timeout,
    )
    out(f"target {name}")
    try:
        conn = connect(dsn, settings)
    except ConnectionFailed as exc:
        _line(out, FAIL, f"cannot connect ({exc.kind}): {exc}")
        return False
    with conn:
        info = detect_server(conn)
        _line(out, OK, f"connected to PostgreSQL {info.short_version} as {info.current_user} "
                       f"(database {info.current_database})")
        if info.version_num < 130000:
            _line(out, WARN, "PostgreSQL 13 or later is supported; older servers may lack views pgperf reads")
        if info.is_superuser:
            _line(out, OK, "role is a superuser (a dedicated role with pg_monitor is safer: see docs/setup-role.sql)")
        elif info.can_read_all_stats:
            _line(out, OK, "role can read every session's statistics (pg_monitor or pg_read_all_stats)")
        else:
            ok = False
            _line(out, FAIL, f"role {info.current_user} cannot read other sessions' statistics or query "
                             f"texts: run GRANT pg_monitor TO {info.current_user};")
        if info.pgss_schema and info.pgss_preloaded is False:
            ok = False
            _line(out, FAIL, f"pg_stat_statements {info.pgss_version} is created in schema {info.pgss_schema} but "
                             "not loaded: add shared_preload_libraries = 'pg_stat_statements' to postgresql.conf "
                             "and restart PostgreSQL")
        elif info.pgss_schema:
            _line(out, OK, f"pg_stat_statements {info.pgss_version} created in schema {info.pgss_schema}")
        elif info.pgss_preloaded:
            ok = False
            _line(out, FAIL, "pg_stat_statements is preloaded but not created in this database: run "
                             "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
        else:
            ok = False
            _line(out, FAIL, "pg_stat_statements is not loaded: add shared_preload_libraries = "
                             "'pg_stat_statements' to postgresql.conf, restart PostgreSQL, then run "
                             "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
        io_timing = conn.execute("SELECT current_setting('track_io_timing')").fetchone()
        if io_timing and io_timing[0] != "on":
            _line(out, WARN, "track_io_timing is off: block read/write times will be 0 "
                             "(set track_io_timing = on; its overhead is small on most platforms)")
        ok = _try_collectors(conn, info, config, dsn, out) and ok
    return ok


def _try_collectors(conn: psycopg.Connection[Any], info: Any, config: Config, dsn: str,
                    out: Callable[[str], None]) -> bool:
    ok = True
    for spec in collectors.REGISTRY:
        options = getattr(config.collectors, spec.name)
        enabled = options.enabled
        if enabled == "auto":
            enabled = is_local(dsn)
        if not enabled:
            _line(out, OK, f"collector {spec.name}: disabled by configuration")
            continue
        ctx = CollectContext(
            target="check", conn=conn, server=info, options=options, previous=None,
            previous_at=None, now=time.time(),
            thresholds=config.thresholds, text_cache=TextCache(),
        )
        started = time.monotonic()
        try:
            result = spec.collect(ctx)
        except CollectorDisabled as exc:
            _line(out, WARN, f"collector {spec.name}: would be disabled ({exc.reason}): {exc.detail}")
            continue
        except psycopg.Error as exc:
            ok = False
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _line(out, FAIL, f"collector {spec.name}: {type(exc).__name__}: {first}")
            continue
        series = sum(len(f.samples) for f in result.families)
        _line(out, OK, f"collector {spec.name}: {series} series in {1000 * (time.monotonic() - started):.0f} ms")
    return ok


def run_check(config: Config, out: Callable[[str], None] = print) -> int:
    ok = True
    for target in config.resolved_targets():
        ok = check_target(target.name, target.dsn, config, out) and ok
    return 0 if ok else 1
