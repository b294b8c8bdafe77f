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


def test_stack_services_and_health() -> None:
    services = compose()["services"]
    assert {"postgres", "pgperf", "prometheus", "alertmanager", "grafana"} <= set(services)
    for name in ("postgres", "pgperf", "prometheus", "alertmanager", "grafana"):
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
