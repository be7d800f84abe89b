"""A migrated SQLite schema made once per test process, replayed into empty databases.

Running the 20-odd migrations into every test's fresh SQLite file cost about a quarter
of the test processes' own CPU time (profiled with py-spy over the suite). The schema
is the same every time, so it is made once, by the real migrations in a child process
(its own PII vault, so this process's vault choice is untouched), dumped as SQL, and
replayed into a database that is still empty when it is upgraded to head. Anything
else — another revision, a database that already has tables, PostgreSQL — runs the
real migrations. The migration tests themselves opt out (``real_migrations`` mark).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_MAKE = (
    "import sys; from pathlib import Path; from fleet_server.migrate import upgrade_url; "
    "upgrade_url(sys.argv[1], key_dir=Path(sys.argv[2]))"
)


def head_schema_script() -> list[str]:
    """The SQL statements (tables, indexes, triggers, seeded rows, ``alembic_version``)
    of a database the real migrations brought to head."""
    with tempfile.TemporaryDirectory(prefix="govedge-template-") as tmp:
        path = Path(tmp) / "template.db"
        subprocess.run(
            [sys.executable, "-c", _MAKE, f"sqlite:///{path}", str(Path(tmp) / "keys")],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        with sqlite3.connect(path) as template:
            lines = list(template.iterdump())
    # iterdump frames its statements in BEGIN/COMMIT; the replay runs inside the
    # migration's own transaction instead.
    return [line for line in lines if line not in ("BEGIN TRANSACTION;", "COMMIT;")]


def replaying_upgrade(
    real: Callable[..., Any], script: Callable[[], list[str]]
) -> Callable[..., Any]:
    """``alembic.command.upgrade`` that replays ``script()`` into an empty SQLite
    database asked for head, and calls ``real`` for everything else."""

    def upgrade(config: Any, revision: str, sql: bool = False, tag: str | None = None) -> None:
        connection = config.attributes.get("connection")
        if (
            revision == "head"
            and not sql
            and connection is not None
            and connection.dialect.name == "sqlite"
            and connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar() == 0
        ):
            for statement in script():
                connection.exec_driver_sql(statement)
            return
        real(config, revision, sql=sql, tag=tag)

    return upgrade
