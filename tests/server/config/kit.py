"""Config test kit: a database with outlets and scopes, the real ingest and reconciler.

Scope versions are written directly (the config API is not part of these tests); the
reconciler runs in the test's thread (``run_pass(now=...)``) against a real Mosquitto,
and a raw paho subscriber checks what agents would receive, verified with the public key.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.config.keys import ConfigKeys, generate_key_file, load_config_keys
from fleet_server.config.reconcile import Reconciler
from fleet_server.config.reports import ReportDesk
from fleet_server.config.stats import ConfigStats
from fleet_server.config.tables import ConfigScope, ConfigVersion, OutletConfig
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.tables import OutletProfile
from fleet_server.ingest import Ingest
from fleet_server.migrate import upgrade
from fleet_server.settings import Settings
from govedge_wire import Kind, decode, topic_for
from govedge_wire.config import DesiredConfig, envelope_bytes, verify_config
from govedge_wire.messages import DesiredConfig as ConfigMessage
from tests.server.helpers import mqtt_client, poll


def signing_key(directory: Path) -> Path:
    """A fresh signing key file (0600) in ``directory``."""
    path = directory / "config-signing.pem"
    generate_key_file(path)
    return path


def add_outlet(
    session: Session,
    outlet_id: str,
    *,
    region: str | None = None,
    kind: str | None = None,
    hours: Any = None,
) -> None:
    session.add(
        OutletProfile(
            outlet_id=outlet_id,
            region_code=region,
            kind=kind,
            opening_hours=hours,
            service_items=[],
        )
    )


def set_scope(
    session: Session,
    scope: str,
    document: dict[str, Any],
    *,
    closed_hours_only: bool = False,
    at: datetime | None = None,
) -> int:
    """Write the scope's next version (as the config API would); returns its number."""
    at = at or datetime.now(UTC)
    row = session.get(ConfigScope, scope)
    if row is None:
        row = ConfigScope(scope=scope, version=1, updated_at=at)
        session.add(row)
        session.flush()
    else:
        row.version += 1
        row.updated_at = at
    session.add(
        ConfigVersion(
            scope=scope,
            version=row.version,
            document=document,
            author="test",
            created_at=at,
            comment=None,
            closed_hours_only=closed_hours_only,
        )
    )
    return row.version


def outlet_row(sessions: sessionmaker[Session], outlet_id: str) -> OutletConfig | None:
    with sessions() as session:
        row = session.get(OutletConfig, outlet_id)
        if row is not None:
            session.expunge(row)
        return row


@dataclass
class Fleet:
    """One server's config parts on one database."""

    engine: Engine
    sessions: sessionmaker[Session]
    settings: Settings
    keys: ConfigKeys
    stats: ConfigStats
    ingest: Ingest
    reconciler: Reconciler

    @property
    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return dict(self.keys.public)


@contextmanager
def running_fleet(
    database_url: str,
    mqtt_url: str,
    key: Path,
    *,
    connect: bool = True,
    public_keys: Path | None = None,
) -> Iterator[Fleet]:
    """The ingest (connected unless ``connect`` is False) and a reconciler not yet passing."""
    engine = make_engine(database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    settings = Settings(
        database_url=database_url, mqtt_url=mqtt_url, config_signing_key=key,
        config_republish_interval_s=0, config_public_keys_file=public_keys,
    )  # fmt: skip
    keys = load_config_keys(settings)
    stats = ConfigStats()
    desk = ReportDesk(stats=stats, republish_interval_s=0)
    ingest = Ingest(settings, sessions=sessions, reports=desk)
    reconciler = Reconciler(
        sessions=sessions, keys=keys, publisher=ingest.publisher, stats=stats,
        publish_timeout_s=10,
    )  # fmt: skip
    desk.attach(publisher=ingest.publisher, publish_lock=reconciler.publish_lock)
    if connect:
        ingest.start()
        poll(lambda: ingest.stats.broker_connected, what="ingest connected")
    try:
        yield Fleet(engine, sessions, settings, keys, stats, ingest, reconciler)
    finally:
        reconciler.stop()
        if connect:
            ingest.stop(timeout=5)
        engine.dispose()


class ConfigWatcher:
    """A raw paho subscriber to outlets' ``down/config``, as an agent would see it."""

    def __init__(self, mqtt_url: str, outlet_ids: list[str]) -> None:
        self.received: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client = mqtt_client(mqtt_url, name="config-watch")
        self.client.on_message = lambda _c, _u, m: self.received.put(
            (m.topic, bytes(m.payload), bool(m.retain))
        )
        acked: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda *_args: acked.put(True)
        for outlet_id in outlet_ids:
            self.client.subscribe(topic_for(outlet_id, Kind.DESIRED_CONFIG), qos=1)
            acked.get(timeout=10)

    def take(self, count: int, *, timeout: float = 15.0) -> list[tuple[str, bytes, bool]]:
        return [self.received.get(timeout=timeout) for _ in range(count)]

    def nothing_pending(self) -> bool:
        return self.received.empty()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def verified(
    topic: str, payload: bytes, keys: dict[str, Ed25519PublicKey]
) -> tuple[str, int, DesiredConfig]:
    """Decode a ``down/config`` message and verify it as the agent does."""
    message = decode(topic, payload)
    assert isinstance(message, ConfigMessage)
    config = verify_config(
        envelope_bytes(message), keys, outlet_id=message.outlet_id, applied_version=None
    )
    return message.outlet_id, message.version, config
