"""The console's parts without a server: the overview built from snapshots, sessions, the
event hub, the plan renderer, the JSON the pages embed, the static files."""

from __future__ import annotations

import json
import threading
import time
from types import MappingProxyType

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from pgperf.collectors import MetricDef, Records
from pgperf.collectors.activity import Connections
from pgperf.collectors.database import DatabaseCounters, DatabaseStats
from pgperf.collectors.statements import StatementDelta, StatementRecords
from pgperf.console.overview import TargetTracker, health
from pgperf.console.routes import plan_lines
from pgperf.http.auth import Identity
from pgperf.http.events import Event, EventHub, TooManyStreams
from pgperf.http.sessions import SessionStore, safe_next
from pgperf.http.static import IMMUTABLE, STATIC
from pgperf.http.templating import json_script, render
from pgperf.sampling import CollectorStatus, Counters, Snapshot

WAITS = MetricDef("pg_wait_event_sessions", "gauge", "x", ("datname", "wait_event_type", "wait_event"))
CPU = MetricDef("pg_wait_event_cpu_sessions", "gauge", "x", ("datname",))
BLOCKED = MetricDef("pg_blocking_blocked_sessions", "gauge", "x", ("datname",))
ROOTS = MetricDef("pg_blocking_root_blockers", "gauge", "x", ("datname",))
AGE = MetricDef("pg_blocking_root_blocker_age_seconds", "gauge", "x", ("datname",))
DEPTH = MetricDef("pg_blocking_chain_depth", "gauge", "x", ("datname",))


def delta(queryid: int, calls: int, total_ms: float) -> StatementDelta:
    return StatementDelta(dbid=1, userid=10, queryid=queryid, datname="app", username="web", calls=calls,
                          total_ms=total_ms, rows=calls, hit=10, read=1, temp_written=0, plan_ms=0.0,
                          sum_squares=0.0, min_ms=0.1, max_ms=9.0, restarted=False)


def snapshot(seq: int, at: float, *, commits: int, hits: int, reads: int, families: tuple = (),
             statements: StatementRecords | None = None, statuses: tuple[CollectorStatus, ...] = ()) -> Snapshot:
    records = [DatabaseStats({"5": DatabaseCounters(xact_commit=commits, blks_hit=hits, blks_read=reads)}),
               Connections(12, 100, 0.12)]
    if statements is not None:
        records.append(statements)
    return Snapshot(target="main", seq=seq, taken_at=at, duration=0.02, interval=5.0, up=True, error_kind=None,
                    error_message=None, server=None, families=families, statuses=statuses,
                    states=MappingProxyType({}), records=Records(records), counters=Counters(samples=seq))


def test_overview_rates_come_from_two_snapshots() -> None:
    tracker = TargetTracker()
    first = tracker.update(snapshot(1, 1000.0, commits=100, hits=900, reads=100), show_texts=True)
    assert first.tps is None and first.cache_hit_percent is None  # one snapshot: no rate yet
    second = tracker.update(snapshot(2, 1005.0, commits=150, hits=1890, reads=110), show_texts=True)
    assert second.tps == 10.0  # 50 transactions in 5 seconds
    assert second.cache_hit_percent == 99.0  # 990 hits of 1000 blocks in the interval
    assert (second.connections, second.max_connections, second.utilization_percent) == (12, 100, 12.0)
    assert [p.tps for p in tracker.history] == [None, 10.0]


def test_overview_lists_statements_by_time_and_hides_texts_when_told() -> None:
    records = StatementRecords(interval_seconds=5.0, deltas=(delta(1, 10, 5.0), delta(2, 1, 50.0), delta(3, 0, 0.0)),
                               texts={1: "SELECT  1\n", 2: "SELECT pg_sleep(0.05)"}, stats_reset=False, deallocations=0)
    tracker = TargetTracker()
    shown = tracker.update(snapshot(1, 1.0, commits=1, hits=1, reads=1, statements=records), show_texts=True)
    assert shown.statements is not None
    assert [(s.query_id, s.text) for s in shown.statements] == [("2", "SELECT pg_sleep(0.05)"), ("1", "SELECT 1")]
    hidden = tracker.update(snapshot(2, 2.0, commits=1, hits=1, reads=1, statements=records), show_texts=False)
    assert hidden.statements is not None and all(s.text is None for s in hidden.statements)
    html = render("console/_live.html", t=hidden, health="ok")
    assert "pg_sleep" not in html and "Statement texts are hidden" in html


def test_statement_texts_are_escaped() -> None:
    markup = "SELECT '<script>alert(1)</script>' FROM t"
    records = StatementRecords(interval_seconds=5.0, deltas=(delta(7, 1, 1.0),), texts={7: markup},
                               stats_reset=False, deallocations=0)
    overview = TargetTracker().update(snapshot(1, 1.0, commits=1, hits=1, reads=1, statements=records), True)
    html = render("console/_live.html", t=overview, health="ok")
    assert "<script>" not in html and "SELECT &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39; FROM t" in html


def test_wait_events_and_blocking_show_when_collected_else_say_not_collected() -> None:
    tracker = TargetTracker()
    bare = tracker.update(snapshot(1, 1.0, commits=1, hits=1, reads=1), show_texts=False)
    assert bare.waits is None and bare.blocking is None and bare.statements is None
    html = render("console/_live.html", t=bare, health="ok")
    assert "Not collected: enable the wait_events collector" in html
    assert "Not collected: enable the blocking collector" in html
    families = (
        WAITS.family([(("app", "Lock", "transactionid"), 3), (("other", "Lock", "transactionid"), 1),
                      (("app", "IO", "DataFileRead"), 2)]),
        CPU.family([(("app",), 4), (("other",), 1)]),
        BLOCKED.family([(("app",), 4), (("other",), 0)]), ROOTS.family([(("app",), 1), (("other",), 0)]),
        AGE.family([(("app",), 95.5), (("other",), 0)]), DEPTH.family([(("app",), 2), (("other",), 0)]),
    )
    full = tracker.update(snapshot(2, 2.0, commits=1, hits=1, reads=1, families=families), show_texts=False)
    assert full.waits is not None and [(w.wait_event, w.sessions) for w in full.waits] == [
        ("transactionid", 4), ("DataFileRead", 2)]
    assert full.cpu_sessions == 5
    assert full.blocking is not None and len(full.blocking) == 1  # the database without blocking is left out
    b = full.blocking[0]
    assert (b.datname, b.blocked, b.roots, b.depth, b.oldest_root_age_seconds) == ("app", 4, 1, 2, 95.5)
    html = render("console/_live.html", t=full, health="ok")
    assert "Not collected: enable" not in html and "transactionid" in html and "1 min 35 s" in html


def test_collector_failures_are_remembered_and_health_follows() -> None:
    tracker = TargetTracker()
    failing = (CollectorStatus("locks", False, 0.5, error="statement_timeout"),
               CollectorStatus("wal", False, 0.0, disabled="insufficient_privilege"))
    first = tracker.update(snapshot(1, time.time(), commits=1, hits=1, reads=1, statuses=failing), show_texts=False)
    assert first.failing_collectors == ("locks",) and health(first) == "degraded"
    ok = (CollectorStatus("locks", True, 0.1, ran_at=time.time()),)
    second = tracker.update(snapshot(2, time.time(), commits=1, hits=1, reads=1, statuses=ok), show_texts=False)
    assert health(second) == "ok"
    locks = next(c for c in tracker.collectors if c.name == "locks")
    assert locks.state == "ok" and locks.last_error == "statement_timeout" and locks.last_error_at is not None
    assert health(second, now=second.taken_at + 60) == "stale" and health(None) == "waiting"


def test_sessions_expire_and_are_bounded() -> None:
    now = [1000.0]
    store = SessionStore(lifetime=60, limit=2, clock=lambda: now[0])
    who = Identity("alice", "viewer")
    a, b = store.create(who, b"d"), store.create(who, b"d")
    assert a.id != b.id and store.get(a.id) == a
    c = store.create(who, b"d")  # past the limit: the oldest ends
    assert store.get(a.id) is None and store.get(b.id) == b and store.get(c.id) == c
    now[0] += 61
    assert store.get(b.id) is None and store.get(c.id) is None
    assert store.end(c.id) is False


@pytest.mark.parametrize(("given", "expected"), [
    ("/alerts?state=firing", "/alerts?state=firing"), (None, "/"), ("", "/"), ("https://evil.example/", "/"),
    ("//evil.example/", "/"), ("/\\evil.example", "/"), ("javascript:alert(1)", "/"), ("/login?next=/x", "/"),
    ("/a\r\nSet-Cookie: x=1", "/"),
])
def test_after_sign_in_only_a_path_of_this_server(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


def test_event_hub_bounds_streams_drops_slow_clients_and_closes() -> None:
    hub = EventHub(2, heartbeat=0.05, queue_size=2)
    first, second = hub.subscribe(), hub.subscribe()
    with pytest.raises(TooManyStreams):
        hub.subscribe()
    stream = first.stream()
    assert next(stream) == b"retry: 3000\n\n"
    hub.publish(Event({"a": "line\nbreak"}))
    assert next(stream) == b'data: {"a":"line\\nbreak"}\n\n'  # one data line, always
    assert next(stream) == b": keep-alive\n\n"  # nothing published: a heartbeat
    hub.publish(Event(0, "alert"))
    hub.publish(Event(1, "alert"))  # both queues (2) are full now
    assert [next(stream), next(stream)] == [b"event: alert\ndata: 0\n\n", b"event: alert\ndata: 1\n\n"]
    hub.publish(Event(2, "alert"))  # second never reads: it overflows and is dropped
    assert hub.streams == 1
    assert list(second.stream()) == [b"retry: 3000\n\n"]  # ended at once
    hub.close()
    assert list(stream) == [b"event: alert\ndata: 2\n\n"]  # what was queued, then the end
    assert hub.streams == 0
    with pytest.raises(TooManyStreams):
        hub.subscribe()


def test_a_stream_ends_when_its_session_ends() -> None:
    hub = EventHub(1, heartbeat=0.05)
    alive = threading.Event()
    alive.set()
    stream = hub.subscribe().stream(alive=alive.is_set)
    assert next(stream).startswith(b"retry")
    assert next(stream) == b": keep-alive\n\n"
    alive.clear()
    assert list(stream) == []
    assert hub.streams == 0


def test_plans_show_their_expressions_only_when_texts_are_shown() -> None:
    plan = {"Plan": {"Node Type": "Nested Loop", "Join Type": "Left", "Total Cost": 42.0, "Startup Cost": 0.5,
                     "Plan Rows": 10, "Join Filter": "(a.id = b.secret_id)", "Plans": [
                         {"Node Type": "Index Scan", "Index Name": "a_pkey", "Relation Name": "a", "Schema": "public",
                          "Total Cost": 8.3, "Startup Cost": 0.3, "Plan Rows": 1, "Index Cond": "(id = 'hunter2')"},
                         {"Node Type": "Seq Scan", "Relation Name": "b", "Total Cost": 30.0, "Plan Rows": 100}]}}
    shown = plan_lines(plan, expressions=True)
    assert shown[0] == (0, "Nested Loop Left Join (cost 0.50..42.00, 10 rows)", ["Join Filter: (a.id = b.secret_id)"])
    assert shown[1][:2] == (1, "Index Scan using a_pkey on public.a (cost 0.30..8.30, 1 rows)")
    assert "Index Cond: (id = 'hunter2')" in shown[1][2]
    hidden = plan_lines(plan, expressions=False)
    assert [line[:2] for line in hidden] == [line[:2] for line in shown]
    assert "hunter2" not in repr(hidden) and "secret_id" not in repr(hidden)


def test_json_in_a_page_cannot_end_its_script_element() -> None:
    value = {"text": "</script><script>alert(1)</script>", "amp": "a & b", "nan": float("nan"),
             "nested": [float("inf"), 1.5]}
    text = str(json_script(value))
    assert "<" not in text and ">" not in text and "&" not in text and "NaN" not in text
    assert json.loads(text) == {"text": value["text"], "amp": "a & b", "nan": None, "nested": [None, 1.5]}


def _request(path: str, **kwargs: str) -> Request:
    return Request(EnvironBuilder(path=path, headers=kwargs).get_environ())


def test_static_files_are_cached_under_their_digest() -> None:
    url = STATIC.url("charts.js")
    name, _, digest = url.removeprefix("/static/").partition("?v=")
    served = STATIC.serve(_request(url), name)
    assert served.status_code == 200 and served.headers["Cache-Control"] == IMMUTABLE
    assert served.headers["Content-Type"] == "text/javascript; charset=utf-8"
    stale = STATIC.serve(_request("/static/charts.js?v=old"), name)
    assert stale.headers["Cache-Control"] == "no-cache" and stale.headers["ETag"] == f'"{digest}"'
    again = STATIC.serve(_request("/static/charts.js", **{"If-None-Match": f'"{digest}"'}), name)
    assert again.status_code == 304
    for bad in ("../app.py", "..", ".hidden", "templates/base.html", "nope.js"):
        assert STATIC.get(bad) is None, bad

