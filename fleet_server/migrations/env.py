"""Alembic environment: runs online against the connection the caller passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from fleet_server.schema import metadata

target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through fleet_server.migrate, which passes a connection")
    _run(connection)


_main()
