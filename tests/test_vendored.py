"""The vendored chart library is exactly the file npm publishes: its tarball (fetched with
npm, checked against the registry's integrity) holds the same bytes, under the licence
and version that ``VENDORED.json`` records."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
from importlib import resources
from pathlib import Path

STATIC = resources.files("pgperf.http").joinpath("static")


def test_the_vendored_chart_library_is_npms(tmp_path: Path) -> None:
    vendored = json.loads(STATIC.joinpath("VENDORED.json").read_text())
    npm = shutil.which("npm")
    assert npm, "npm is needed (make deps installs it)"
    for name, entry in vendored.items():
        body = STATIC.joinpath(name).read_bytes()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], name
        assert f"Chart.js v{entry['version']}" in body[:200].decode(), name
        spec = f"{entry['package']}@{entry['version']}"
        packed = subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", str(tmp_path)],
                                capture_output=True, text=True, timeout=180, cwd=tmp_path)
        assert packed.returncode == 0, packed.stderr
        tarball = tmp_path / packed.stdout.strip().splitlines()[-1]
        algorithm, _, digest = entry["npm_integrity"].partition("-")
        assert base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode() == digest
        view = subprocess.run([npm, "view", spec, "dist.integrity", "license"], capture_output=True, text=True,
                              timeout=60)
        assert view.returncode == 0 and entry["npm_integrity"] in view.stdout, view.stdout + view.stderr
        with tarfile.open(tarball) as tar:
            member = tar.extractfile(entry["member"])
            assert member is not None
            assert member.read() == body, f"{name} differs from {entry['member']} of {spec}"
            licence = tar.extractfile("package/LICENSE.md")
            assert licence is not None
            assert licence.read() == STATIC.joinpath(entry["license_file"]).read_bytes()
        assert entry["license"] == "MIT" and "MIT" in view.stdout
