"""TLS and basic authentication from a web configuration file (exporter-toolkit format),
verified with real clients: curl, requests and a Prometheus scraping over TLS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

from helpers import Exporter, make_config, wait_until
from pgperf.http.webconfig import WebConfigError, load_web_config
from tools.cluster import Cluster

PASSWORD = "scrape-secret-42"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=pgperf test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


def _web_config(pki: Path, *, mtls: bool = False) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=6)).decode()
    lines = ["tls_server_config:", "  cert_file: server.crt", "  key_file: server.key", "  min_version: TLS12"]
    if mtls:
        lines += ["  client_auth_type: RequireAndVerifyClientCert", "  client_ca_file: ca.crt"]
    lines += ["basic_auth_users:", f"  prometheus: '{hashed}'", "http_server_config:", "  headers:",
              "    Strict-Transport-Security: max-age=31536000"]
    path = pki / ("web-mtls.yml" if mtls else "web.yml")
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(pg_cluster: Cluster, web_config: Path) -> Exporter:
    config = make_config(pg_cluster.dsn(), sampling_interval=5)
    exporter = Exporter(config, web_config=load_web_config(str(web_config)))
    exporter.start()
    # The first sample is served before the tests read pg_up (a scrape before it is valid but empty).
    wait_until(lambda: all(t.latest is not None for t in exporter.sampler.targets.values()), message="first sample")
    return exporter


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args],
                          capture_output=True, text=True, timeout=30)


def test_tls_and_basic_auth_with_curl_and_requests(pg_cluster: Cluster, pki: Path) -> None:
    exporter = _start(pg_cluster, _web_config(pki))
    url = f"https://127.0.0.1:{exporter.server.port}/metrics"
    try:
        assert _curl("--cacert", str(pki / "ca.crt"), "-u", f"prometheus:{PASSWORD}", url).stdout == "200"
        assert _curl("--cacert", str(pki / "ca.crt"), url).stdout == "401"
        assert _curl("--cacert", str(pki / "ca.crt"), "-u", "prometheus:wrong", url).stdout == "401"
        assert _curl("--cacert", str(pki / "ca.crt"), "-u", f"nobody:{PASSWORD}", url).stdout == "401"
        plain = _curl(url.replace("https", "http"))  # plain HTTP to a TLS port is refused
        assert plain.stdout != "200"
        response = requests.get(url, verify=str(pki / "ca.crt"), auth=("prometheus", PASSWORD), timeout=10)
        assert response.status_code == 200 and "pg_up" in response.text
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, timeout=10)  # untrusted certificate without the CA
        tls10 = subprocess.run(["curl", "-sS", "--tls-max", "1.1", "--cacert", str(pki / "ca.crt"), url],
                               capture_output=True, text=True, timeout=30)
        assert tls10.returncode != 0  # below min_version
    finally:
        exporter.stop()


def test_mutual_tls(pg_cluster: Cluster, pki: Path) -> None:
    exporter = _start(pg_cluster, _web_config(pki, mtls=True))
    url = f"https://127.0.0.1:{exporter.server.port}/metrics"
    try:
        auth = ["--cacert", str(pki / "ca.crt"), "-u", f"prometheus:{PASSWORD}"]
        assert _curl(*auth, "--cert", str(pki / "client.crt"), "--key", str(pki / "client.key"), url).stdout == "200"
        assert _curl(*auth, url).stdout != "200"  # no client certificate: handshake refused
    finally:
        exporter.stop()


def test_prometheus_scrapes_over_tls(pg_cluster: Cluster, pki: Path, prometheus_factory: Any) -> None:
    exporter = _start(pg_cluster, _web_config(pki))
    try:
        config = f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: pgperf
    scheme: https
    tls_config:
      ca_file: {pki / 'ca.crt'}
    basic_auth:
      username: prometheus
      password: {PASSWORD}
    static_configs:
      - targets: ["127.0.0.1:{exporter.server.port}"]
"""
        prom = prometheus_factory(config)

        def up() -> Any:
            data = requests.get(prom.url + "/api/v1/query", params={"query": 'up{job="pgperf"}'}, timeout=5).json()
            result = data["data"]["result"]
            return result and result[0]["value"][1] == "1" and result

        wait_until(up, timeout=30, message="Prometheus target up over TLS")
        pg_up = requests.get(prom.url + "/api/v1/query", params={"query": "pg_up"}, timeout=5).json()
        assert pg_up["data"]["result"][0]["value"][1] == "1"
    finally:
        exporter.stop()


def test_web_config_errors_listed(tmp_path: Path) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n  min_version: SSL3\n"
                   "basic_auth_users:\n  alice: plaintext\nbogus: 1\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(bad))
    text = "\n".join(info.value.problems)
    assert "bogus: unknown key" in text
    assert "cert_file: file" in text and "does not exist" in text
    assert "min_version: expected one of" in text
    assert "basic_auth_users.alice: expected a bcrypt hash" in text


@pytest.mark.parametrize(("value", "message"), [
    ("hunter2", "basic_auth_users.alice: expected a bcrypt hash"),
    ("$2y$10$...", "basic_auth_users.alice: not a complete bcrypt hash"),  # the README's placeholder
])
def test_serve_exits_2_on_bad_web_config(pg_cluster: Cluster, tmp_path: Path, value: str, message: str) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text(f"basic_auth_users:\n  alice: {value}\n")
    proc = subprocess.run([sys.executable, "-m", "pgperf", "serve", "--dsn", pg_cluster.dsn(), "--no-store",
                           "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{bad}: {message}" in proc.stderr
    assert value not in proc.stderr


_GOOD = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()


@pytest.mark.parametrize("hashed", [
    "$2y$10$...",
    "$2b$10$",
    _GOOD[:-1],  # truncated
    _GOOD + "x",
    _GOOD[:4] + "99" + _GOOD[6:],  # cost out of bcrypt's range
    _GOOD[:4] + "1" + _GOOD[6:],  # one-digit cost
    _GOOD[:-2] + "!!",  # not the bcrypt alphabet
    "$2x$10$" + _GOOD[7:],  # not a variant the exporter-toolkit accepts
])
def test_incomplete_bcrypt_hashes_refused(tmp_path: Path, hashed: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n  bob: '{_GOOD}'\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}: basic_auth_users.alice: ")
    for variant in ("$2a$", "$2b$", "$2y$"):
        path.write_text(f"basic_auth_users:\n  bob: '{variant}{_GOOD[4:]}'\n")
        assert set(load_web_config(str(path)).users) == {"bob"}
