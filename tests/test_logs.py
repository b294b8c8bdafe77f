"""Structured logs (``--log.format logfmt|json``): every line ``pgperf serve`` writes while
its database is down, refuses its password or stops under it, and while its store is
unreachable, parses in both formats, with the fields other exporters write, and no
secret in any field."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import wait_until
from logfmt_reader import parse_logfmt
from pgperf.logs import StructuredFormatter, capture_uncaught
from pgperf.redact import RedactingFilter
from tools.cluster import Cluster, free_port

SECRET = "Log-Secret-4c1e"
STORE_SECRET = "Log-Store-Secret-77d0"

PARSERS: dict[str, Callable[[str], dict[str, Any]]] = {"logfmt": parse_logfmt, "json": json.loads}


# -- the formatter on its own -----------------------------------------------------------------

def _record(msg: str, *args: Any, level: int = logging.WARNING, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"boom with postgresql://app:{SECRET}@db/x\nsecond line")
        except RuntimeError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("pgperf.sampler", level, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_fields_of_a_collector_failure(fmt: str) -> None:
    record = _record("target %s: collector %s failed (%s): %s", "shop", "bloat", "statement_timeout",
                     "canceling statement due to statement timeout")
    fields = PARSERS[fmt](StructuredFormatter(fmt).format(record))  # type: ignore[arg-type]
    assert list(fields)[:4] == ["ts", "level", "logger", "msg"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["ts"])
    assert fields["level"] == "warn" and fields["logger"] == "pgperf.sampler"
    assert fields["msg"] == "target shop: collector bloat failed (statement_timeout): canceling statement due to statement timeout"
    assert (fields["target"], fields["collector"], fields["error_kind"]) == ("shop", "bloat", "statement_timeout")


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_every_field_is_redacted_and_one_line(fmt: str) -> None:
    record = _record("store %s unreachable (%s): %s", f"host=db password={SECRET}", "auth_failed",
                     f"FATAL: password authentication failed; password={SECRET}", exc=True,
                     dsn=f"postgresql://pgperf:{SECRET}@db:5432/app", detail={"conninfo": f"password='{SECRET}'"},
                     target="explicit", attempts=3, ok=False, note="héllo \"quoted\" = sign")
    RedactingFilter().filter(record)
    line = StructuredFormatter(fmt).format(record)  # type: ignore[arg-type]
    assert "\n" not in line and SECRET not in line
    fields = PARSERS[fmt](line)
    assert SECRET not in json.dumps(fields)
    assert fields["target"] == "explicit"  # extra= wins over the format string
    assert fields["error_kind"] == "auth_failed"
    assert "postgresql://pgperf:***@db:5432/app" == fields["dsn"]
    assert "RuntimeError: boom with postgresql://app:***@db/x" in fields["exc"] and "second line" in fields["exc"]
    assert fields["note"] == "héllo \"quoted\" = sign"
    assert str(fields["attempts"]) == "3" and str(fields["ok"]).lower() == "false"


def test_messages_that_are_not_about_a_failure_get_no_error_kind() -> None:
    fields = StructuredFormatter("json").fields(_record("%s by %s (%s) not recorded in the audit log: %s",
                                                        "config_reload", "operator", "applied", "store down"))
    assert "error_kind" not in fields
    info = StructuredFormatter("json").fields(_record("target %s: collector %s works again", "shop", "io",
                                                      level=logging.INFO))
    assert (info["target"], info["collector"], info["level"]) == ("shop", "io", "info")
    plain = StructuredFormatter("json").fields(_record("100%% done (%s)", "x", level=logging.ERROR))
    assert plain["msg"] == "100% done (x)" and "error_kind" not in plain


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        StructuredFormatter("xml")  # type: ignore[arg-type]


def test_uncaught_exceptions_of_threads_are_logged_structured() -> None:
    logger = logging.getLogger("pgperf.test_uncaught")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(StructuredFormatter("json"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    saved = (sys.excepthook, threading.excepthook)
    try:
        capture_uncaught(logger)

        def fail() -> None:
            raise ValueError(f"password={SECRET}")

        thread = threading.Thread(target=fail, name="worker")
        thread.start()
        thread.join()
    finally:
        sys.excepthook, threading.excepthook = saved
        logging.captureWarnings(False)
        logger.removeHandler(handler)
    (line,) = lines
    fields = json.loads(line)
    assert fields["level"] == "error" and fields["msg"] == "uncaught exception in thread worker: ValueError"
    assert "ValueError: password=***" in fields["exc"] and SECRET not in line


# -- pgperf serve with faults, as a process --------------------------------------------------------

@pytest.fixture(scope="module")
def secured(pg_bindir: Any) -> Iterator[Cluster]:
    """A server whose monitoring role has a password, and a store role on the same server."""
    cluster = Cluster(pg_bindir, base_dir=os.environ.get("PGPERF_TEST_TMP", "/tmp"), name="pgperf-logs").start()
    cluster.execute(f"CREATE ROLE mon LOGIN PASSWORD '{SECRET}' IN ROLE pg_monitor")
    yield cluster
    cluster.destroy()


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """``pgperf serve`` with *args*; yields the process, its URL and its standard error
    lines as they come (standard output must stay empty)."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG"))}
    proc = subprocess.Popen([sys.executable, "-m", "pgperf", "serve", "--profile", "development",
                             "--sampling-interval", "1", "--web.listen-address", f"127.0.0.1:{port}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**base, **(env or {})})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        yield proc, f"http://127.0.0.1:{port}", lines
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        reader.join(10)
        assert out == "", out


def _metrics(url: str) -> str:
    try:
        return requests.get(url + "/metrics", timeout=5).text
    except requests.RequestException:
        return ""


def _check(lines: list[str], fmt: str) -> list[dict[str, Any]]:
    """Every line parses in *fmt*, has ts, level and msg, and holds no secret."""
    assert lines, "pgperf wrote nothing"
    records = []
    for line in lines:
        line = line.rstrip("\n")
        assert SECRET not in line and STORE_SECRET not in line, line
        fields = PARSERS[fmt](line)
        assert {"ts", "level", "msg"} <= fields.keys(), line
        assert fields["level"] in ("debug", "info", "warn", "error"), line
        records.append(fields)
    return records


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_serve_with_faults_writes_parseable_lines_without_secrets(secured: Cluster, fmt: str, tmp_path: Path) -> None:
    good = secured.dsn(user="mon", password=SECRET)
    wrong = secured.dsn(user="mon", password=SECRET + "-wrong")
    down_store = f"postgresql://store:{STORE_SECRET}@127.0.0.1:{free_port()}/postgres"
    records = []
    # The wrong password, and a store nobody listens on.
    spool = {"PGPERF_STORE_SPOOL_DIR": str(tmp_path / "spool")}
    with serve("--dsn", wrong, "--store-dsn", down_store, "--log.format", fmt, env=spool) as (_, url, lines):
        wait_until(lambda: "pgperf_connection_error" in _metrics(url) and len(lines) >= 3, timeout=30,
                   message="the authentication failure logged")
    records += _check(lines, fmt)
    assert any(r.get("error_kind") == "authentication_failed" and r.get("target") for r in records), records
    assert any(r.get("error_kind") == "connection_refused" and r["logger"] == "pgperf.store.writer" for r in records)
    # A database that stops under pgperf, then comes back.
    with serve("--dsn", good, "--no-store", "--log.format", fmt) as (_, url, lines):
        wait_until(lambda: "pg_up 1.0" in _metrics(url), timeout=30, message="sampling")
        secured.stop("fast")
        try:
            wait_until(lambda: "pg_up 0.0" in _metrics(url), timeout=30, message="the database seen down")
        finally:
            secured.start()
        wait_until(lambda: "pg_up 1.0" in _metrics(url), timeout=30, message="the database back")
        wait_until(lambda: any("reachable again" in line for line in lines), timeout=10, message="recovery logged")
    stopped = _check(lines, fmt)
    records += stopped
    assert any(r.get("error_kind") and r["level"] == "error" and r.get("target") for r in stopped), stopped
    assert {"info", "warn", "error"} <= {r["level"] for r in records}


def test_format_from_the_environment_and_bad_values(secured: Cluster) -> None:
    with serve("--dsn", secured.dsn(user="mon", password=SECRET), "--no-store",
               env={"PGPERF_LOG_FORMAT": "json"}) as (_, url, lines):
        wait_until(lambda: "pg_up 1.0" in _metrics(url) and lines, timeout=30, message="serving")
    assert all(json.loads(line)["ts"] for line in lines)
    bad = subprocess.run([sys.executable, "-m", "pgperf", "serve", "--log.format", "xml"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--log.format" in bad.stderr and "'logfmt', 'json'" in bad.stderr
