"""The fleet server's one typed settings object, read from arguments and ``GOVEDGE_*``.

Command-line options override the environment, which overrides the defaults. Values are
checked once at start, so a bad URL or listen address fails before anything connects.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./fleet.db"
_MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerAddress:
    """Where the broker is and how to log in; parsed from ``mqtt://`` or ``mqtts://``."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Split ``mqtt[s]://[user[:password]@]host[:port]``; raise ``ValueError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in _MQTT_PORTS:
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("MQTT URL has no host")
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or _MQTT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6); raise ``ValueError`` otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address must be HOST:PORT, got {listen!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


class Settings(BaseSettings):
    """Everything ``fleet-server run`` needs; env names are ``GOVEDGE_`` + field name."""

    model_config = SettingsConfigDict(env_prefix="GOVEDGE_", frozen=True, extra="forbid")

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    database_url: str = DEFAULT_DATABASE_URL
    listen: str = "127.0.0.1:8080"
    server_id: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        default_factory=lambda: f"fleet-{socket.gethostname()}"[:128]
    )
    # Ingest batching: a batch closes at this many messages or this long after its first.
    ingest_batch_max: Annotated[int, Field(ge=1, le=100_000)] = 500
    ingest_batch_window_s: Annotated[float, Field(gt=0, le=10)] = 0.05
    # Messages waiting for the worker; beyond this the newest are dropped and counted.
    ingest_queue_max: Annotated[int, Field(ge=100)] = 200_000
    # Deadline for draining queued messages into the database at shutdown.
    drain_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    rebirth_interval_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    command_ttl_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    mqtt_keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # Set to split the uplink among several server processes (MQTT shared subscription).
    mqtt_share_group: str | None = None
    log_level: str = "INFO"

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("database URL must be sqlite:///PATH or postgresql+psycopg://...")
        return value

    @property
    def broker(self) -> BrokerAddress:
        """The parsed ``mqtt_url``."""
        return parse_mqtt_url(self.mqtt_url)

    @property
    def listen_address(self) -> tuple[str, int]:
        """The parsed ``listen`` address."""
        return parse_listen(self.listen)
