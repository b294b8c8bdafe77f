"""docker-compose.yml and the Dockerfile, checked offline (no Docker engine here): the
compose specification, every file the stack mounts, every variable it needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pgperf.config import load_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_file_follows_the_compose_specification() -> None:
    binary = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    proc = subprocess.run([binary, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_mounted_file_exists() -> None:
    data = compose()
    missing = []
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not (ROOT / source).exists():
                    missing.append(f"{name}: {source}")
        build = service.get("build")
        if build:
            context = build if isinstance(build, str) else build.get("context", ".")
            if not (ROOT / context / "Dockerfile").exists():
                missing.append(f"{name}: Dockerfile in {context}")
    for section in ("configs", "secrets"):
        for name, item in data.get(section, {}).items():
            if "file" in item and not (ROOT / item["file"]).exists():
                missing.append(f"{section}.{name}: {item['file']}")
    assert not missing, missing


STACK = ("postgres", "pgperf", "prometheus", "alertmanager-1", "alertmanager-2", "grafana")
PAIR = ("alertmanager-1", "alertmanager-2")


def test_stack_services_and_health() -> None:
    services = compose()["services"]
    assert set(STACK) <= set(services)
    for name in STACK:
        assert "healthcheck" in services[name], name
    assert "/readyz" in " ".join(services["pgperf"]["healthcheck"]["test"])
    assert "shared_preload_libraries=pg_stat_statements" in services["postgres"]["command"]
    assert services["workload"]["profiles"] == ["workload"]


def test_variables_come_from_the_example_env_file() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    used |= {s["environment"] for s in compose().get("secrets", {}).values() if "environment" in s}
    example = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert used <= example, used - example


def test_no_real_secret_committed() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            value = line.split("=", 1)[1]
            assert "change-me" in value or "XXXX" in value or value in ("development",), line
    assert not (ROOT / ".env").exists()


def test_dockerfile_runs_as_non_root_with_a_readiness_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/readyz" in text
    assert 'ENTRYPOINT ["pgperf"]' in text


def _flags(command: list[str]) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    for arg in command:
        name, _, value = arg.partition("=")
        flags.setdefault(name, []).append(value)
    return flags


def _mounted(service: dict[str, Any], target: str) -> Path:
    (source,) = [v.split(":")[0] for v in service["volumes"] if isinstance(v, str) and v.split(":")[1] == target]
    return ROOT / source


def test_alertmanager_pair_is_one_cluster() -> None:
    """Each member listens for gossip and names the other as its peer, on the port the
    other listens on; both read the same configuration and keep their own data."""
    services = compose()["services"]
    assert "alertmanager" not in services
    flags = {name: _flags(services[name]["command"]) for name in PAIR}
    for name, other in (PAIR, PAIR[::-1]):
        (listen,) = flags[name]["--cluster.listen-address"]
        (other_listen,) = flags[other]["--cluster.listen-address"]
        assert listen.rpartition(":")[2].isdigit(), f"{name}: gossip is switched off ({listen!r})"
        assert flags[name]["--cluster.peer"] == [f"{other}:{other_listen.rpartition(':')[2]}"]
        assert services[name]["healthcheck"] and services[name]["secrets"]
        # Grafana's datasource reaches the pair by the name both members answer to.
        assert services[name]["networks"]["default"]["aliases"] == ["alertmanager"]
    configs = {name: _mounted(services[name], "/etc/alertmanager/alertmanager.yml") for name in PAIR}
    assert len(set(configs.values())) == 1
    data = {[v for v in services[name]["volumes"] if v.endswith(":/alertmanager")][0].split(":")[0] for name in PAIR}
    assert len(data) == 2, "each member needs its own data volume"
    assert data <= set(compose()["volumes"])
    published = [services[name]["ports"][0].split(":")[0] for name in PAIR]
    assert len(set(published)) == 2


def test_flags_of_the_pair_are_alertmanagers() -> None:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "install the Debian package prometheus-alertmanager (make deps)"
    known = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    for name in PAIR:
        for flag in _flags(compose()["services"][name]["command"]):
            assert f"{flag}=" in known.stdout + known.stderr, f"{name}: {flag} is not an Alertmanager flag"


def test_prometheus_and_pgperf_reference_both_members() -> None:
    services = compose()["services"]
    prometheus = yaml.safe_load(_mounted(services["prometheus"], "/etc/prometheus/prometheus.yml").read_text())
    members = [f"{name}:9093" for name in PAIR]
    (alerting,) = prometheus["alerting"]["alertmanagers"]
    assert [t for c in alerting["static_configs"] for t in c["targets"]] == members
    (scrape,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "alertmanager"]
    assert [t for c in scrape["static_configs"] for t in c["targets"]] == members
    env = services["pgperf"]["environment"]
    assert "PGPERF_ALERTS_ALERTMANAGER_URL" not in env
    config = load_config(env={k: str(v) for k, v in env.items() if "${" not in str(v)}
                         | {"PGPERF_API_TOKEN": "a-token-of-sixteen-chars"})
    assert config.alerts.alertmanagers == tuple(f"http://{m}" for m in members)
