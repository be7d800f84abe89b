"""A throwaway PostgreSQL cluster on a loopback port, made with the OS's initdb."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from govedge_testbed.ports import free_port, wait_for_port
from govedge_testbed.services import ServiceUnavailable

_HINT = "install it with: apt-get install postgresql (run ./scripts/test, which does this as root)"


def find_pg_bindir() -> Path:
    """Directory holding initdb and pg_ctl, newest version first."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(bindir, "initdb").exists():
            return Path(bindir)
    raise ServiceUnavailable("PostgreSQL server binaries (initdb) are not installed", hint=_HINT)


class Postgres:
    """Run a private cluster with trust auth on 127.0.0.1.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres``
    system user and commands run through ``runuser``.
    """

    def __init__(self) -> None:
        self.bindir = find_pg_bindir()
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="govedge-pg-")
        self.root = Path(self._tmp.name)
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailable("no 'postgres' system user", hint=_HINT) from None
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode != 0:
            raise ServiceUnavailable(
                f"{Path(args[0]).name} failed: {result.stderr.strip()[-400:]}",
                hint=f"see {self.logfile}",
            )

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) for ``database``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """initdb, start, and wait for the server."""
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -h 127.0.0.1 -k {self.root} -F",
            "start",
        )
        if not wait_for_port(self.port, timeout=30):
            raise ServiceUnavailable("postgres did not listen", hint=f"see {self.logfile}")

    def pause(self) -> None:
        """Stop the server (fast shutdown: open connections are cut) and keep its data,
        for tests of what clients do while the database is down; ``resume`` restarts it."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the paused server again, on the same port with the same data."""
        self._pg_ctl_start()

    def create_database(self, name: str) -> str:
        """Create ``name`` and return its URL."""
        self._run(
            str(self.bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            name,
        )
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster."""
        if self.datadir.exists():
            subprocess.run(
                [
                    *self._as_user,
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                check=False,
                timeout=60,
            )
        self._tmp.cleanup()

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
