"""The ssl and gssapi collectors: connections by TLS and GSSAPI use, on a server with TLS on."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from collecting import family, run_once, samples, scrape_lint
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


@pytest.fixture(scope="module")
def tls_cluster(pg_bindir: Any) -> Iterator[Cluster]:
    """A server with ``ssl = on`` and a throwaway self-signed certificate."""
    cluster = Cluster(pg_bindir, base_dir=os.environ.get("PGPERF_TEST_TMP", "/tmp"), name="pgperf-tls",
                      settings={"ssl": "on"})
    cluster.init()
    key, crt = cluster.data / "server.key", cluster.data / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "2", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    os.chmod(key, 0o600)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for path in (key, crt):
            os.chown(path, pw.pw_uid, pw.pw_gid)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_connections_by_tls_use(tls_cluster: Cluster) -> None:
    dsn = tls_cluster.dsn()
    with psycopg.connect(dsn + "?sslmode=require", autocommit=True) as tls, \
            psycopg.connect(dsn + "?sslmode=disable", autocommit=True) as plain, \
            psycopg.connect(host=str(tls_cluster.socket_dir), port=tls_cluster.port, user="postgres",
                            dbname="postgres", autocommit=True) as local:
        version = tls.execute("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
        cipher = tls.execute("SELECT cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
        result = run_once("ssl", plain)
        assert local.info.backend_pid
    conns = samples(result, "pg_stat_ssl_connections")
    assert family(result, "pg_stat_ssl_connections").labels == ("datname", "transport", "ssl", "version", "cipher")
    assert conns[("postgres", "tcp", "true", version, cipher)] == 1
    assert conns[("postgres", "tcp", "false", "", "")] == 1
    assert conns[("postgres", "unix", "false", "", "")] == 1
    assert version.startswith("TLSv")
    names = {f.name for f in result.families}
    if tls_cluster.major == 13:
        assert samples(result, "pg_stat_ssl_compressed_connections")[("postgres",)] == 0
    else:
        assert "pg_stat_ssl_compressed_connections" not in names


def test_gssapi_without_kerberos(tls_cluster: Cluster) -> None:
    with tls_cluster.connect() as conn:
        result = run_once("gssapi", conn)
    conns = samples(result, "pg_stat_gssapi_connections")
    assert conns[("postgres", "false", "false")] >= 1
    names = {f.name for f in result.families}
    if tls_cluster.major >= 16:
        assert samples(result, "pg_stat_gssapi_delegated_connections")[("postgres",)] == 0
    else:
        assert "pg_stat_gssapi_delegated_connections" not in names


def test_scrapes_are_lint_clean(tls_cluster: Cluster) -> None:
    for collector, family_name in (("ssl", "pg_stat_ssl_connections{"), ("gssapi", "pg_stat_gssapi_connections{")):
        _, problems = scrape_lint(tls_cluster.dsn() + "?sslmode=require", collector, family_name)
        assert not [p for p in problems if p.startswith(("pg_stat_ssl", "pg_stat_gssapi"))], problems
