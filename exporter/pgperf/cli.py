"""The ``pgperf`` command: argument parsing and subcommands only.

Exit status: 0 success, 1 failure at run time, 2 invalid configuration or usage; 141 (as
for a command killed by SIGPIPE) when the reader of standard output went away.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import psycopg

from . import collectors, logs
from ._memory import limit_malloc_arenas
from ._version import __version__
from .alerts import AlertNotFound, AlertStore, InvalidTransition
from .alerts.alertmanager import AlertmanagerError
from .alerts.service import AlertService, NoAlertmanager
from .app import App, ConfigSource, ReloadRejected
from .audit import Actor, cli_actor
from .check import run_check
from .collectors.bloat import RelationNotFound, inspect
from .config import Config, ConfigError, load_config
from .db import ConnectionFailed, SessionSettings, connect, database_dsn, describe_dsn
from .http.parsing import TIME_SYNTAX, parse_time
from .http.webconfig import WebConfigError, load_web_config
from .insight import advisor
from .redact import RedactingFilter, redact
from .reports import ReportService, render
from .reports.service import check_target
from .store import SpoolLocked, StoreClient, StoreUnavailable
from .store.schema import MIGRATIONS, schema_version

log = logging.getLogger("pgperf")

EXIT_CONFIG = 2
#: What a shell reports for a command ended by SIGPIPE (its reader went away).
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit status is 2 as well
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def _config_flags(parser: argparse.ArgumentParser, *, collectors_flags: bool = False,
                  alertmanager_flag: bool = False) -> None:
    g = parser.add_argument_group("configuration (flag > PGPERF_* environment > file > profile)")
    g.add_argument("--config", metavar="FILE", help="YAML configuration file (or PGPERF_CONFIG)")
    g.add_argument("--profile", choices=("development", "production", "analytics"),
                   help="environment profile (default: production)")
    g.add_argument("--dsn", help="PostgreSQL to monitor (or PGPERF_DSN, DATA_SOURCE_NAME, libpq PG* variables)")
    g.add_argument("--store-dsn", help="where samples are stored (default: the monitored database)")
    g.add_argument("--log.level", dest="log_level", choices=("debug", "info", "warning", "error"))
    g.add_argument("--log.format", dest="log_format", choices=logs.FORMATS, help="log lines as logfmt (default) or JSON")
    if alertmanager_flag:
        g.add_argument("--alertmanager.url", dest="alertmanager_urls", metavar="URL", action="append",
                       help="Alertmanager base URL, once per member of its cluster (alerts.alertmanager_urls, "
                            "PGPERF_ALERTS_ALERTMANAGER_URLS)")
    if collectors_flags:
        g.add_argument("--sampling-interval", metavar="SECONDS", help="seconds between samples (e.g. 10, 500ms, 1m)")
        g.add_argument("--web.listen-address", dest="listen_address", metavar="HOST:PORT",
                       help="address to serve HTTP on (default :9187)")
        g.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                       help="TLS and basic authentication, exporter-toolkit format")
        g.add_argument("--no-store", action="store_true", help="do not store samples in PostgreSQL")
        g.add_argument("--compat.legacy-aliases", dest="legacy_aliases", action=argparse.BooleanOptionalAction,
                       default=None, help="also serve the family names of older postgres_exporter releases "
                       "(default: on)")
        for spec in collectors.REGISTRY:
            g.add_argument(f"--collector.{spec.name}", dest=f"collector_{spec.name}",
                           action=argparse.BooleanOptionalAction, default=None,
                           help=f"enable the {spec.name} collector")
            # BooleanOptionalAction spells the negative --no-collector.NAME


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pgperf", description="PostgreSQL performance monitoring: Prometheus exporter, "
                     "sample store, alerts and reports.")
    parser.add_argument("--version", action="version", version=f"pgperf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="sample PostgreSQL and serve /metrics")
    _config_flags(serve, collectors_flags=True, alertmanager_flag=True)

    check = sub.add_parser("check", help="check configuration, connectivity, privileges and pg_stat_statements")
    _config_flags(check)

    migrate = sub.add_parser("migrate", help="create or upgrade the monitoring tables in the store")
    _config_flags(migrate)

    alerts = sub.add_parser("alerts", help="list, acknowledge or resolve alerts recorded in the store")
    actions = alerts.add_subparsers(dest="action", required=True, parser_class=_Parser)
    listing = actions.add_parser("list", help="list alerts (newest first)")
    listing.add_argument("--state", action="append", choices=("firing", "acknowledged", "resolved"))
    listing.add_argument("--severity", action="append", choices=("critical", "error", "warning", "info"))
    listing.add_argument("--since", metavar="TIME", help=f"alerts since {TIME_SYNTAX}")
    listing.add_argument("--target")
    listing.add_argument("--json", action="store_true", help="print JSON")
    _config_flags(listing)
    for name, text, without in (
            ("ack", "acknowledge an alert and silence it in Alertmanager",
             "record the acknowledgement in pgperf only: no silence, its notifications go on"),
            ("resolve", "resolve by hand an alert that no longer fires, and expire its silence",
             "record the resolution without asking Alertmanager (pgperf reopens the alert if Alertmanager "
             "notifies it again)")):
        action = actions.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}. Alertmanager comes "
                                    "from the configuration of pgperf serve (alerts.alertmanager_urls) or "
                                    "--alertmanager.url; without one the command refuses, unless --no-alertmanager.")
        action.add_argument("alert_id")
        action.add_argument("--by", help="who acts, recorded (default: the operating-system user)")
        action.add_argument("--no-alertmanager", action="store_true", help=without)
        _config_flags(action, alertmanager_flag=True)

    report = sub.add_parser("report", help="generate a performance report from the stored samples",
                            description="Build a report of one target over a window from the store, store it in "
                                        "performance_reports and print or write it.")
    _config_flags(report)
    window = report.add_mutually_exclusive_group(required=True)
    window.add_argument("--period", choices=("daily", "weekly"),
                        help="the last 24 hours or 7 days, ending now")
    window.add_argument("--from", dest="start", metavar="TIME",
                        help=f"window start: {TIME_SYNTAX}; UTC if no offset")
    report.add_argument("--to", dest="end", metavar="TIME", help="window end, same syntax (with --from; default: now)")
    report.add_argument("--format", choices=("text", "md", "json", "html"), default="text", help="output format")
    report.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    report.add_argument("--target", metavar="NAME", help="target to report on (default: the first configured)")
    report.add_argument("--no-save", action="store_true", help="do not store the report in performance_reports")

    bloat = sub.add_parser("bloat", help="estimated bloat of a table and its b-tree indexes; measured with --exact",
                           description="Estimate the bloat of TABLE and its b-tree indexes from the catalog "
                                       "statistics; with --exact, also measure it with pgstattuple.")
    _config_flags(bloat)
    bloat.add_argument("table", metavar="TABLE", help="the table, as SQL names it (schema.table)")
    bloat.add_argument("--exact", action="store_true",
                       help="measure with pgstattuple (reads every page of the table and its indexes)")
    bloat.add_argument("--database", metavar="NAME", help="database of the table (default: the target's)")
    bloat.add_argument("--target", metavar="NAME", help="target (default: the first configured)")
    bloat.add_argument("--json", action="store_true", help="print JSON")

    advise = sub.add_parser("advise", help="index advice for a target, proven by the planner",
                            description="Plan the target's top and slow statements now and propose indexes "
                                        "(verified with HypoPG where it is created); advice applied since, from "
                                        "the store, with mean times before and after.")
    _config_flags(advise)
    advise.add_argument("--target", metavar="NAME", help="target to advise on (default: the first configured)")
    advise.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    return parser


def _flags(args: argparse.Namespace) -> tuple[dict[str, Any], dict[tuple[str | int, ...], str]]:
    """Nested configuration values given as flags, and the flag that set each."""
    flags: dict[str, Any] = {}
    names: dict[tuple[str | int, ...], str] = {}

    def put(path: tuple[str, ...], value: Any, flag: str) -> None:
        node = flags
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        names[path] = f"flag {flag}"

    simple = {
        "profile": (("profile",), "--profile"),
        "dsn": (("dsn",), "--dsn"),
        "store_dsn": (("store", "dsn"), "--store-dsn"),
        "log_level": (("log_level",), "--log.level"),
        "log_format": (("log_format",), "--log.format"),
        "sampling_interval": (("sampling_interval",), "--sampling-interval"),
        "listen_address": (("web", "listen_address"), "--web.listen-address"),
        "web_config_file": (("web", "config_file"), "--web.config.file"),
        "legacy_aliases": (("compat", "legacy_aliases"), "--compat.legacy-aliases"),
    }
    for attr, (path, flag) in simple.items():
        value = getattr(args, attr, None)
        if value is not None:
            put(path, value, flag)
    urls = getattr(args, "alertmanager_urls", None)
    if urls:
        # The flag names every Alertmanager: it replaces both forms of the lower layers.
        put(("alerts", "alertmanager_urls"), urls, "--alertmanager.url")
        put(("alerts", "alertmanager_url"), None, "--alertmanager.url")
    if getattr(args, "no_store", False):
        put(("store", "enabled"), False, "--no-store")
    for spec in collectors.REGISTRY:
        value = getattr(args, f"collector_{spec.name}", None)
        if value is not None:
            put(("collectors", spec.name, "enabled"), value, f"--collector.{spec.name}")
    return flags, names


def setup_logging(level: str, fmt: logs.LogFormat = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logs.StructuredFormatter(fmt))
    handler.addFilter(RedactingFilter())
    logs.capture_uncaught(log)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # psycopg_pool logs every connection request at INFO: keep it to warnings.
    logging.getLogger("psycopg.pool").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("cheroot").setLevel(logging.WARNING)


def load(args: argparse.Namespace) -> Config:
    flags, names = _flags(args)
    return load_config(config_file=args.config, flags=flags, flag_names=names)


#: How to point a command at the store, said whenever it cannot reach one.
STORE_FIX = ("set the store with --store-dsn DSN (PGPERF_STORE_DSN, store.dsn) or, when the samples are stored in "
             "the monitored database, --dsn DSN (PGPERF_DSN, DATA_SOURCE_NAME, dsn); pgperf serve's configuration "
             "(--config FILE, PGPERF_*) applies here too")
#: libpq variables that say where to connect when no DSN does.
_LIBPQ_WHERE = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE")


class CommandFailed(Exception):
    """A command cannot go on: *message* for standard error, *status* to exit with."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _store_is_configured(config: Config) -> bool:
    """Whether anything names the store: store.dsn, a monitored database, or libpq variables.
    (With none of them libpq's defaults are tried, a local socket, as pgperf serve does.)"""
    return bool(config.store.dsn or config.dsn or config.targets
                or any(os.environ.get(name) for name in _LIBPQ_WHERE))


def open_store(config: Config, command: str, *, pool_size: int = 2) -> StoreClient:
    """A client of the store for a command run by hand, connected once first: an
    unreachable store is said at once with how to point pgperf at one, without the
    connection pool's retries and warnings. Raises CommandFailed: status 2 when nothing
    names a store (or the configuration turns it off), 1 when the one named is unreachable."""
    if not config.store.enabled:
        raise CommandFailed(f"pgperf {command}: the configuration turns the store off (store.enabled: false, "
                            f"PGPERF_STORE_ENABLED): {command} reads and writes the store; {STORE_FIX}", EXIT_CONFIG)
    client = StoreClient(config, pool_size=pool_size)
    try:
        client.probe()
    except StoreUnavailable as exc:
        client.close()
        if not _store_is_configured(config):
            raise CommandFailed(f"pgperf {command}: no store is configured: {STORE_FIX}. (libpq's defaults were "
                                f"tried: {exc})", EXIT_CONFIG) from None
        which = ("store.dsn" if config.store.dsn else "the monitored database's DSN (no store.dsn)" if config.dsn
                 or config.targets else "libpq's PG* environment variables")
        raise CommandFailed(f"pgperf {command}: {exc}. The store is named by {which}: check that it is up, or "
                            f"{STORE_FIX}") from None
    return client


def store_tables(client: StoreClient, command: str) -> None:
    """Refuse, with the fix, a store that has no pgperf tables in the configured schema
    (a wrong database or schema, or a store pgperf never wrote to). Raises CommandFailed."""
    with client.connection() as conn:
        version = schema_version(conn, client.schema)
    if version == 0:
        raise CommandFailed(
            f"pgperf {command}: the store {describe_dsn(client.dsn)} has no pgperf tables in schema "
            f"{client.schema!r}. Is it the store pgperf serve writes to? Name the schema with PGPERF_STORE_SCHEMA "
            f"(store.schema) and the database with --store-dsn (PGPERF_STORE_DSN) or --dsn; or create the tables "
            f"with pgperf migrate")


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    limit_malloc_arenas()  # before any thread starts (pgperf._memory)
    web_config = None
    if config.web.config_file:
        try:
            web_config = load_web_config(config.web.config_file)
        except WebConfigError as exc:
            print(f"pgperf: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    source = ConfigSource(lambda: load(args), args.config or os.environ.get("PGPERF_CONFIG"))
    try:
        app = App(config, web_config=web_config, source=source)
    except SpoolLocked as exc:
        log.error("%s", exc)
        return 1
    except ConfigError as exc:  # a target file
        print(f"pgperf: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    server = app.server()
    try:
        server.start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.web.listen_address, exc.strerror or exc)
        app.stop()
        return 1
    stop = threading.Event()
    reload_requested = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            reload_requested.set()
            return
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    app.start()  # an unreachable store does not stop sampling: samples are spooled
    targets = ", ".join(app.sampler.targets)
    log.info(
        "pgperf %s serving %s://%s/metrics (profile %s, sampling every %gs, targets: %s, store: %s)",
        __version__, "https" if web_config is not None and web_config.tls else "http",
        _display_address(config.web.listen_address, server.port), config.profile, config.sampling_interval, targets,
        f"schema {config.store.schema_name} at {describe_dsn(config.store_dsn())}" if app.store else "off",
    )
    if app.alert_service is not None and not config.alerts.alertmanagers:
        log.info("no Alertmanager configured (alerts.alertmanager_urls): acknowledging an alert through the API "
                 "records who and when but silences nothing, and alerts are not reconciled")
    while not stop.wait(0.5):
        if reload_requested.is_set():
            reload_requested.clear()
            try:
                app.reload(Actor("signal:SIGHUP", "operator", "localhost"))
            except (ConfigError, ReloadRejected):
                pass  # logged and audited; the running configuration stays
    server.stop()
    app.stop()
    log.info("stopped")
    return 0


def cmd_migrate(config: Config) -> int:
    where = f"schema {config.store.schema_name} at {describe_dsn(config.store_dsn())}"
    try:
        client = open_store(config, "migrate", pool_size=1)
    except CommandFailed as exc:
        print(exc, file=sys.stderr)
        return exc.status
    try:
        applied = client.migrate()
    except StoreUnavailable as exc:
        log.error("%s", exc)
        return 1
    except psycopg.errors.InsufficientPrivilege as exc:
        detail = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else "permission denied"
        params = psycopg.conninfo.conninfo_to_dict(config.store_dsn())
        database, role = params.get("dbname") or "<database>", params.get("user") or "<role>"
        print(f"pgperf migrate: permission denied creating or upgrading {where} ({detail}): run "
              f"docs/setup-role.sql as a superuser, or GRANT CREATE ON DATABASE {database} TO {role}",
              file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        detail = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"pgperf migrate: migrating store {where} failed: {detail}", file=sys.stderr)
        return 1
    finally:
        client.close()
    latest = MIGRATIONS[-1].version if MIGRATIONS else 0
    if applied:
        print(f"store {where}: applied migration(s) {', '.join(f'{v:03d}' for v in applied)}; now at {latest:03d}")
    else:
        print(f"store {where}: already at version {latest:03d}, nothing to do")
    return 0


def cmd_report(config: Config, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        if args.period:
            if args.end:
                raise ValueError("--to goes with --from, not with --period")
            start, end = now - (timedelta(days=1) if args.period == "daily" else timedelta(days=7)), now
        else:
            start = parse_time(args.start, "--from", now=now)
            end = parse_time(args.end, "--to", now=now) if args.end else now
        ReportService.check_window(start, end)
        check_target(config, args.target)
    except ValueError as exc:
        print(f"pgperf report: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    output = None
    if args.output:
        # Opened before the report is built and stored: a path that cannot be written is a
        # usage error found at once. Appending does not truncate an existing file yet.
        existed = os.path.exists(args.output)
        try:
            output = open(args.output, "a", encoding="utf-8")
        except OSError as exc:
            print(f"pgperf report: cannot write the report to {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_CONFIG
    written = False
    try:
        try:
            client = open_store(config, "report", pool_size=1)
        except CommandFailed as exc:
            print(exc, file=sys.stderr)
            return exc.status
        try:
            client.migrate()  # a store written by an older pgperf gets the rollup tables reports read
            service = ReportService(config, client)
            report = service.generate(start, end, args.target, args.period or "on_demand", store=not args.no_save)
        except StoreUnavailable as exc:
            log.error("%s", exc)
            return 1
        except psycopg.Error as exc:
            log.error("cannot build the report from the store: %s", str(exc).strip())
            return 1
        finally:
            client.close()
        text = render(report, args.format)
        if output is not None:
            try:
                if output.seekable():
                    output.seek(0)
                    output.truncate()
                output.write(text)
                output.flush()
            except OSError as exc:
                log.error("report %s not written to %s: %s", report.report_id, args.output,
                          exc.strerror or exc)
                return 1
            written = True
            log.info("report %s written to %s", report.report_id, args.output)
        else:
            # Bytes, so that the emoji reach the terminal whatever the locale says.
            sys.stdout.buffer.write(text.encode("utf-8"))
            sys.stdout.flush()
    finally:
        if output is not None:
            output.close()
            if not written and not existed:
                os.unlink(args.output)  # no empty file left behind by a failed run
    return 0


def _display_address(address: str, port: int) -> str:
    host = address.rpartition(":")[0] or "0.0.0.0"
    return f"{host}:{port}"


def cmd_check(config: Config) -> int:
    return run_check(config)


def _who(given: str | None) -> str:
    """Who acts: --by, else the operating-system user. Raises ValueError."""
    if given is None:
        try:
            given = getpass.getuser()
        except (KeyError, OSError):
            raise ValueError("--by: who acts is required here (the operating-system user is unknown)") from None
    if not given.strip() or len(given) > 100:
        raise ValueError("--by: who acts, 1 to 100 characters")
    return given.strip()


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def cmd_alerts(config: Config, args: argparse.Namespace) -> int:
    # Invalid usage is found before the store is reached, and exits 2 like argparse's errors.
    by = ""
    try:
        since = parse_time(args.since, "--since") if args.action == "list" and args.since else None
        if args.action != "list":
            by = _who(args.by)
            if not config.alerts.alertmanagers and not args.no_alertmanager:
                raise NoAlertmanager("acknowledge" if args.action == "ack" else "resolve")
    except ValueError as exc:
        print(f"pgperf alerts {args.action}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except NoAlertmanager as exc:
        print(f"pgperf alerts {args.action}: {exc}; or pass --no-alertmanager to "
              + ("record the acknowledgement in pgperf only (no silence: its notifications go on)"
                 if args.action == "ack" else "record the resolution without asking Alertmanager"), file=sys.stderr)
        return EXIT_CONFIG
    try:
        client = open_store(config, f"alerts {args.action}")
    except CommandFailed as exc:
        print(exc, file=sys.stderr)
        return exc.status
    if args.action != "list" and args.no_alertmanager:  # this command does not ask Alertmanager
        config = config.model_copy(update={"alerts": config.alerts.model_copy(
            update={"alertmanager_urls": (), "alertmanager_url": None})})
    service = AlertService(AlertStore(client), config)
    try:
        store_tables(client, f"alerts {args.action}")
        if args.action == "list":
            alerts = service.store.search(states=args.state or (), severities=args.severity or (), since=since,
                                          target=args.target)
            if args.json:
                print(json.dumps([a.to_dict() for a in alerts], default=str, indent=1))
            else:
                print(f"{'ALERT ID':16}  {'STATUS':12}  {'SEVERITY':8}  {'SINCE (UTC)':19}  {'ALERT':28}  TARGET / BY")
                for a in alerts:
                    who = a.resolved_by or a.acknowledged_by or ""
                    print(f"{a.alert_id:16}  {a.status:12}  {a.severity:8}  {a.timestamp:%Y-%m-%d %H:%M:%S}  "
                          f"{a.metric[:28]:28}  {a.target or '-'}{'  by ' + who if who else ''}")
            return 0
        if args.action == "ack":
            alert = service.acknowledge(args.alert_id, by, cli_actor(), require_alertmanager=not args.no_alertmanager)
            how = (f"silenced in Alertmanager by silence {alert.silence_id} for "
                   f"{_duration(config.alerts.silence_duration)}" if alert.silence_id
                   else "in pgperf only: no silence, its notifications go on" if args.no_alertmanager
                   else "no silence: the alert has no labels to match")
        else:
            before = service.store.get(args.alert_id)
            alert = service.resolve(args.alert_id, by, cli_actor(), require_alertmanager=not args.no_alertmanager)
            how = ("without asking Alertmanager" if args.no_alertmanager
                   else f"silence {before.silence_id} expired" if before.silence_id and before.status != "resolved"
                   else "Alertmanager no longer holds it")
        print(f"alert {alert.alert_id} ({alert.metric}) is {alert.status} by {by}: {how}")
        return 0
    except (AlertNotFound, InvalidTransition, AlertmanagerError, StoreUnavailable) as exc:
        print(f"pgperf alerts {args.action}: {exc}", file=sys.stderr)
        return 1
    except CommandFailed as exc:
        print(exc, file=sys.stderr)
        return exc.status
    except psycopg.Error as exc:
        print(f"pgperf alerts {args.action}: the store refused the request ({type(exc).__name__}: "
              f"{redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else 'no detail'})", file=sys.stderr)
        return 1
    finally:
        client.close()


def cmd_bloat(config: Config, args: argparse.Namespace) -> int:
    targets = {t.name: t for t in config.resolved_targets()}
    target = targets.get(args.target) if args.target else next(iter(targets.values()))
    if target is None:
        print(f"pgperf bloat: no target {args.target!r}; configured: {', '.join(targets)}", file=sys.stderr)
        return EXIT_CONFIG
    dsn = database_dsn(target.dsn, args.database) if args.database else target.dsn
    c = config.connection
    # pgstattuple reads the whole table: an hour, not the sampler's statement_timeout.
    settings = SessionSettings(connect_timeout=c.connect_timeout, lock_timeout=c.lock_timeout,
                               statement_timeout=3600.0 if args.exact else max(c.statement_timeout, 60.0))
    try:
        with connect(dsn, settings) as conn:
            report = inspect(conn, args.table, exact=args.exact)
    except RelationNotFound as exc:
        print(f"pgperf bloat: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConnectionFailed as exc:
        print(f"pgperf bloat: cannot connect to {describe_dsn(dsn)} ({exc.kind}): {redact(str(exc)).strip()}",
              file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"pgperf bloat: {type(exc).__name__}: {redact(str(exc)).strip()}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(report.to_dict(), indent=1) + "\n" if args.json else report.text())
    return 1 if args.exact and report.exact_unavailable else 0


def cmd_advise(config: Config, args: argparse.Namespace) -> int:
    try:
        result = advisor.advise_target(config, args.target)
    except advisor.UnknownTarget as exc:
        print(f"pgperf advise: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except advisor.TargetUnreachable as exc:
        print(f"pgperf advise: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        if result.store_problem:
            print(f"pgperf advise: note: {result.store_problem}", file=sys.stderr)
        print(json.dumps(result.to_json(), indent=1))
    else:
        sys.stdout.write(advisor.render_text(result))
    return 0


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "check": lambda config, args: cmd_check(config),
    "migrate": lambda config, args: cmd_migrate(config),
    "alerts": cmd_alerts,
    "report": lambda config, args: cmd_report(config, args),
    "bloat": cmd_bloat,
    "advise": cmd_advise,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # a reader that went away shows here, not as a warning at exit
        return status
    except BrokenPipeError:
        # pgperf check | head: the reader closed the pipe. Stop quietly, as other tools do
        # (they die of SIGPIPE; the shell reports 128 + 13), and keep Python from complaining
        # again when it flushes standard output at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load(args)
    except ConfigError as exc:
        print(f"pgperf: {exc}", file=sys.stderr)
        print("pgperf: fix the settings above (see the README's configuration reference); exiting with status 2",
              file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log_level, config.log_format)
    return COMMANDS[args.command](config, args)


if __name__ == "__main__":
    sys.exit(main())
