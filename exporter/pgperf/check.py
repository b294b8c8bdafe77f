"""``pgperf check``: can pgperf monitor this server, and if not, the exact fix.

Checks, per target: the connection, the server version, whether the role can read every
session's statistics (superuser, ``pg_monitor`` or ``pg_read_all_stats``), whether
pg_stat_statements is preloaded and created, ``track_io_timing``, then runs every enabled
collector once through the runner ``pgperf serve`` uses, so that a failure is classified
as the sampler classifies it (a collector the sampler would disable is a warning, one that
would fail is a failure). Exit status 0 when every required check passes, 1 otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from . import collectors
from .collectors import CollectContext, CollectorSpec, TextCache
from .config import Config
from .db import ConnectionFailed, ServerInfo, SessionSettings, connect, detect_server
from .sampling import runner

OK, WARN, FAIL = "ok", "warn", "FAIL"
#: The least-privilege monitoring role, and the script in the repository that creates it.
SETUP_ROLE, SETUP_SCRIPT = "pgperf", "docs/setup-role.sql"


def _line(out: Callable[[str], None], status: str, text: str) -> None:
    out(f"  [{status:>4}] {text}")


def check_target(name: str, dsn: str, config: Config, out: Callable[[str], None],
                 registry: Sequence[CollectorSpec] = collectors.REGISTRY) -> bool:
    """Run the checks for one target; return True when monitoring will work. *registry*
    is the collector set to try (those the configuration enables)."""
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
            # Works, but a leaked DSN of a superuser gives away the whole server: say so
            # (a warning, not a failure) and name the least-privilege role instead.
            _line(out, WARN, f"role {info.current_user} is a superuser: monitoring works, but with far more "
                             f"privilege than pgperf needs; connect as the role {SETUP_ROLE} instead "
                             f"({SETUP_SCRIPT} creates it: pg_monitor and CONNECT, nothing more)")
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
        ok = _try_collectors(name, conn, info, config, dsn, settings, registry, out) and ok
    return ok


def _try_collectors(name: str, conn: psycopg.Connection[Any], info: ServerInfo, config: Config, dsn: str,
                    settings: SessionSettings, registry: Sequence[CollectorSpec], out: Callable[[str], None]) -> bool:
    """Run every enabled collector once, through the runner ``pgperf serve`` uses: a
    collector the sampler would disable is a warning, one that would fail is a failure."""
    ok = True
    text_cache = TextCache()
    for spec in registry:
        if not runner.is_enabled(spec, config, dsn):
            _line(out, OK, f"collector {spec.name}: disabled by configuration")
            continue
        ctx = CollectContext(
            target=name, conn=conn, server=info, options=runner.options_for(spec, config), previous=None,
            previous_at=None, now=time.time(), thresholds=config.thresholds, text_cache=text_cache,
        )
        outcome = runner.invoke(spec, ctx, settings.no_answer_after)
        if outcome.disabled is not None:
            reason, detail = outcome.disabled
            _line(out, WARN, f"collector {spec.name}: would be disabled ({reason}): {detail}")
        elif outcome.error is not None:
            ok = False
            kind, detail = outcome.error
            _line(out, FAIL, f"collector {spec.name}: fails ({kind}): {detail}")
        else:
            assert outcome.result is not None
            series = sum(len(f.samples) for f in outcome.result.families)
            _line(out, OK, f"collector {spec.name}: {series} series in {1000 * outcome.duration:.0f} ms")
    return ok


def run_check(config: Config, out: Callable[[str], None] = print,
              registry: Sequence[CollectorSpec] = collectors.REGISTRY) -> int:
    """Check every target; the exit status (0 when monitoring will work everywhere)."""
    ok = True
    for target in config.resolved_targets():
        ok = check_target(target.name, target.dsn, config, out, registry) and ok
    return 0 if ok else 1
