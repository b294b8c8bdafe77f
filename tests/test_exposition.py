"""The exposition text pgperf renders itself is what prometheus-client renders from the same
snapshots, and its gzip form is one valid gzip member of that text."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

from prometheus_client import generate_latest

from helpers import make_config
from pgperf.collectors import Family, Records
from pgperf.config import load_config
from pgperf.exposition import MetricsCache
from pgperf.sampling import CollectorStatus, Counters, Snapshot

FAMILIES = (
    Family("pg_up_like", "gauge", "Plain gauge.", (), (((), 1.0),)),
    Family("pgperf_things_total", "counter", "A counter with _total.", ("kind",), ((("a",), 3.0), (("b",), 1e21))),
    Family("pg_stat_database_xact_commit", "counter", "A counter kept without _total (untyped).",
           ("datname", "datid"), ((("postgres", "5"), 12.0), (("db", "1"), 0.0))),
    Family("pgperf_info_like", "info", "An info family\nwith a newline and a back\\slash in its help.",
           ("version",), ((("15.4",), 1.0),)),
    # Label values that need escaping; labels given out of alphabetical order.
    Family("pg_settings_like", "gauge", "Escapes.", ("zeta", "alpha"),
           ((('quote " here', "back\\slash"), -0.0), (("new\nline", ""), float("nan")),
            (("inf", "x"), float("inf")), (("minus", "x"), float("-inf")), (("big", "x"), 123456789.0))),
    Family("pgperf_empty", "gauge", "No samples: HELP and TYPE only.", ("x",), ()),
    Family("pgperf_things_total", "counter", "A second family of the same name (dropped with one target).",
           ("kind",), ((("c",), 2.0),)),
)


def snapshot(target: str, seq: int, families: tuple[Family, ...] = FAMILIES) -> Snapshot:
    return Snapshot(
        target=target, seq=seq, taken_at=1_700_000_000.0, duration=0.25, interval=15.0, up=True, error_kind=None,
        error_message=None, server=None, families=families,
        statuses=(CollectorStatus("statements", True, 0.1, ran_at=1_700_000_000.0),
                  CollectorStatus("tables", False, 0.0, disabled="insufficient_privilege")),
        states={}, records=Records(), counters=Counters(samples=seq, last_success=1_700_000_000.0),
        databases={"postgres": None, "other": "connection_refused"},
    )


def extra() -> list[Family]:
    return [Family("pgperf_store_up", "gauge", "Store.", (), (((), 1.0),))]


def without_process(body: bytes) -> bytes:
    return body.split(b"# HELP process_")[0]


def test_one_target_renders_like_prometheus_client() -> None:
    config = make_config("postgresql://x@127.0.0.1/postgres")
    snaps = [snapshot("main", 1)]
    cache = MetricsCache(lambda: snaps, config, extra)
    expected = generate_latest(cache.registry)
    plain = cache.render()
    assert without_process(plain) == expected
    assert b"# HELP process_" in plain  # live process metrics follow
    assert b'pg_settings_like{alpha="back\\\\slash",zeta="quote \\" here"} -0.0' in expected
    assert b"pgperf_things_total" in expected and b'kind="c"' not in expected


def test_several_targets_are_labelled_like_prometheus_client() -> None:
    config = load_config(env={}, flags={"profile": "development", "store": {"enabled": False}, "targets": [
        {"name": "a", "dsn": "postgresql://x@h1/postgres"}, {"name": "b", "dsn": "postgresql://x@h2/postgres"}]})
    snaps = [snapshot("a", 3), snapshot("b", 7, FAMILIES[:3])]
    cache = MetricsCache(lambda: snaps, config, extra, process_metrics=False)
    expected = generate_latest(cache.registry)
    assert cache.render() == expected
    assert b'pgperf_things_total{kind="c",target="a"} 2.0' in expected


def test_names_prometheus_client_escapes_take_its_own_path() -> None:
    config = make_config("postgresql://x@127.0.0.1/postgres")
    odd = (Family("pgperf_odd", "gauge", "A reserved label name.", ("__reserved",), ((("v",), 1.0),)),)
    cache = MetricsCache(lambda: [snapshot("main", 1, odd)], config, process_metrics=False)
    assert cache.render() == generate_latest(cache.registry)


def test_gzip_is_one_member_of_the_plain_text() -> None:
    config = make_config("postgresql://x@127.0.0.1/postgres")
    state: dict[str, Any] = {"seq": 1, "store": 0}
    cache = MetricsCache(lambda: [snapshot("main", state["seq"])], config, extra)
    cache.set_extra_key(lambda: state["store"])
    for _ in range(2):
        compressed = cache.render(gzipped=True)
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip, exactly one member
        text = decoder.decompress(compressed)
        assert decoder.eof and decoder.unused_data == b""
        assert without_process(text) == without_process(cache.render())
        assert gzip.decompress(compressed) == text
        state["seq"] += 1  # a new sample: rendered again
        state["store"] += 1


def test_rendered_once_per_sample() -> None:
    config = make_config("postgresql://x@127.0.0.1/postgres")
    snaps = [snapshot("main", 1)]
    cache = MetricsCache(lambda: snaps, config, process_metrics=False)
    cache.refresh()  # what the sampler does after each sample
    first = cache.render()
    snaps[0] = snapshot("main", 1, FAMILIES[:1])  # same sample number: the rendering is kept
    assert cache.render() == first
    snaps[0] = snapshot("main", 2, FAMILIES[:1])  # a new sample: rendered again
    cache.refresh()
    assert cache.render() == generate_latest(cache.registry) != first
    assert b"pgperf_empty" not in cache.render()


def test_postgres_exporter_health_families_and_the_alias_switch() -> None:
    """pg_exporter_* map onto the sample; legacy aliases go with compat.legacy_aliases."""
    alias = Family("pg_replication_lag", "gauge", "An alias.", (), (((), 0.0),))
    own = Family("pg_replication_lag_seconds", "gauge", "The family it repeats.", (), (((), 0.0),))
    snaps = [snapshot("main", 7, (own, alias))]
    body = MetricsCache(lambda: snaps, make_config("postgresql://x@127.0.0.1:6543/postgres"), extra).render()
    assert b"\npg_exporter_scrapes_total 7.0\n" in body
    assert b"\npg_exporter_last_scrape_duration_seconds 0.25\n" in body
    # A disabled collector (tables) is no error; a failed one is.
    assert b"\npg_exporter_last_scrape_error 0.0\n" in body
    assert b"\npg_replication_lag 0.0\n" in body
    failed = snapshot("main", 8, (own, alias))
    failed = Snapshot(**{**vars(failed), "statuses": (CollectorStatus("statements", False, 0.1, error="query_error"),)})
    off = make_config("postgresql://x@127.0.0.1:6543/postgres", compat={"legacy_aliases": False})
    body = MetricsCache(lambda: [failed], off, extra).render()
    assert b"\npg_exporter_last_scrape_error 1.0\n" in body
    assert b"pg_replication_lag_seconds 0.0" in body and b"\npg_replication_lag " not in body


def several(names: tuple[str, ...]) -> Any:
    return load_config(env={}, flags={"profile": "development", "store": {"enabled": False}, "targets": [
        {"name": n, "dsn": f"postgresql://x@h{i}/postgres"} for i, n in enumerate(names)]})


class CountingFamilies(tuple):  # type: ignore[type-arg]
    """Families that count how often they are read: how often their target is rendered."""

    reads = 0

    def __iter__(self) -> Any:
        type(self).reads += 1
        return super().__iter__()


def test_targets_with_different_families_render_like_prometheus_client() -> None:
    odd = Family("pgperf_odd", "gauge", "A reserved label name.", ("__reserved",), ((("v",), 1.0),))
    late = Family("pgperf_only_in_c", "gauge", "Only the third target has it.", ("x",), ((("1",), 4.0),))
    snaps = [snapshot("a", 3, FAMILIES[3:] + FAMILIES[:3]), snapshot("b", 7, (odd, *FAMILIES[:2])),
             snapshot("c", 1, (late, *FAMILIES))]
    cache = MetricsCache(lambda: snaps, several(("a", "b", "c")), extra, process_metrics=False)
    expected = generate_latest(cache.registry)
    assert cache.render() == expected
    assert gzip.decompress(cache.render(gzipped=True)) == expected
    assert b'pgperf_odd{__reserved="v",target="b"} 1.0' in expected
    # A new sample of one target: the text follows it.
    snaps[1] = snapshot("b", 8, FAMILIES[:1])
    cache.refresh()
    assert cache.render() == generate_latest(cache.registry) != expected


def test_a_sample_renders_its_own_target_only() -> None:
    names = tuple(f"t{i}" for i in range(5))
    snaps = [snapshot(n, 1, CountingFamilies(FAMILIES)) for n in names]
    cache = MetricsCache(lambda: snaps, several(names), extra, process_metrics=False)
    first = cache.render(gzipped=True)
    assert CountingFamilies.reads == len(names)
    snaps[2] = snapshot("t2", 2, CountingFamilies(FAMILIES[:2]))
    cache.refresh()  # the sampler of t2, after its sample: the next scrape renders it
    second = cache.render(gzipped=True)
    assert CountingFamilies.reads == len(names) + 1  # t2 rendered, the others' blocks joined as they were
    assert cache.render(gzipped=True) == second and CountingFamilies.reads == len(names) + 1
    assert gzip.decompress(second) == generate_latest(cache.registry) != gzip.decompress(first)
