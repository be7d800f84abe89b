"""The fleet server's one typed settings object, read from arguments and ``GOVEDGE_*``.

Command-line options override the environment, which overrides the defaults. Values are
checked once at start, so a bad URL or listen address fails before anything connects.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleet_server.evaluations.rules import EvaluationRules, rules_for

DEFAULT_DATABASE_URL = "sqlite:///./fleet.db"
_MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# The settings whose default is a directory of that name under ``state_dir``.
STATE_SUBDIRS = {
    "pki_dir": "fleet-pki",
    "pii_key_dir": "fleet-pii-keys",
    "releases_dir": "fleet-releases",
    "playbook_runs_dir": "fleet-playbook-runs",
}


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


class DingTalkSetting(BaseModel):
    """One DingTalk custom robot: its webhook URL (with ``access_token``) and, when the
    robot is secured by signing, its secret (never shown: ``SecretStr``)."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(pattern=r"^https?://")]
    secret: SecretStr | None = None


class Settings(BaseSettings):
    """Everything ``fleet-server run`` needs; env names are ``GOVEDGE_`` + field name."""

    model_config = SettingsConfigDict(env_prefix="GOVEDGE_", frozen=True, extra="forbid")

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    database_url: str = DEFAULT_DATABASE_URL
    listen: str = "127.0.0.1:8080"
    # What this process runs (docs/deploy.md, "Roles"): everything, the operator API
    # only, or the MQTT ingest with the background work that belongs with it.
    role: Literal["all", "api", "ingest"] = "all"
    server_id: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        default_factory=lambda: f"fleet-{socket.gethostname()}"[:128]
    )
    # Ingest batching: a batch closes at this many messages or this long after its first.
    ingest_batch_max: Annotated[int, Field(ge=1, le=100_000)] = 500
    ingest_batch_window_s: Annotated[float, Field(gt=0, le=10)] = 0.05
    # Messages waiting for the worker, by count and by bytes (payload and topic, plus a
    # fixed overhead per message); beyond either the newest are dropped and counted.
    ingest_queue_max: Annotated[int, Field(ge=100)] = 200_000
    ingest_queue_max_bytes: Annotated[int, Field(ge=1024 * 1024)] = 64 * 1024 * 1024
    # Deadline for draining queued messages into the database at shutdown.
    drain_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    rebirth_interval_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    command_ttl_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    mqtt_keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # Set to split the uplink among several server processes (MQTT shared subscription).
    mqtt_share_group: str | None = None
    # Shared mode only: how often each worker writes its heartbeat row, and how old a
    # row may be before its worker counts as gone (docs/operations.md).
    worker_heartbeat_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    worker_lease_s: Annotated[float, Field(gt=0, le=3600)] = 15.0
    log_level: str = "INFO"
    # Upstream targets (JSON, TOML or YAML; docs/transactions.md). Without it nothing is
    # delivered: rows wait as pending (and are counted) until targets are configured.
    upstream_targets_file: Path | None = None
    # Delivery worker: how often it looks for due rows when not woken, how many
    # deliveries run at once, and how long a claimed row stays claimed.
    delivery_poll_interval_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    delivery_concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    delivery_lease_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    # 好差评 rules per province (fleet_server.evaluations.rules), with overrides; the
    # bounds are the fleet config's (EvaluationConfig), so the profile can become one.
    # An outlet whose signed config has an `evaluation` part gets its rules from it;
    # each process re-reads those every evaluation_rules_refresh_s.
    evaluation_profile: Literal["national", "zhejiang", "sichuan", "taiyuan", "dezhou"] = "national"
    rectification_days: Annotated[int, Field(ge=1, le=90)] | None = None
    rectification_working_days: bool | None = None
    evaluation_rules_refresh_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # Security (docs/security.md). api_auth "off" lets every API call in as admin (demo
    # only; logged as a warning). Tokens expire after api_token_ttl_s.
    api_auth: Literal["on", "off"] = "on"
    api_token_ttl_s: Annotated[int, Field(ge=60, le=366 * 86_400)] = 30 * 86_400
    probes_require_auth: bool = False
    # Web login (docs/security.md): a session ends session_idle_s after its last request
    # and session_max_s after login; login_max_failures wrong passwords for one user in
    # login_lockout_s lock that user (until the window passes or an admin unlocks), and
    # login_address_max_failures from one client address refuse that address.
    session_idle_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 30 * 60
    session_max_s: Annotated[int, Field(ge=60, le=30 * 86_400)] = 12 * 3600
    login_max_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    login_lockout_s: Annotated[int, Field(ge=60, le=86_400)] = 15 * 60
    login_address_max_failures: Annotated[int, Field(ge=1, le=10_000)] = 20
    # Where the server's state lives (docs/deploy.md, "Where things live"): the four
    # directories below default to subdirectories of it. The installed server sets
    # /var/lib/govedge (the units and /etc/govedge/fleet-server.env); the default, the
    # working directory, is for the demo and development.
    state_dir: Path = Path(".")
    # The fleet CA and its files (created on first use); outlet certificate validity.
    pki_dir: Path = Path("fleet-pki")
    outlet_cert_days: Annotated[int, Field(ge=1, le=825)] = 90
    enrollment_ttl_max_s: Annotated[int, Field(ge=60, le=30 * 86_400)] = 7 * 86_400
    # Request bodies (fleet_server.api.limits): the default largest body (a few routes have
    # their own); the endpoints without an operator token (login, enroll, renew) take
    # open_rate_per_min calls per client address, open_burst at once.
    http_body_max_bytes: Annotated[int, Field(ge=1024, le=2**31)] = 1024 * 1024
    open_rate_per_min: Annotated[float, Field(gt=0, le=60_000)] = 30.0
    open_burst: Annotated[int, Field(ge=1, le=10_000)] = 10
    # After a revocation the broker reloads its CRL (Mosquitto 2.0 does on SIGHUP): the
    # server signals the pid in broker_pid_file (the `pid_file` of its mosquitto.conf),
    # or runs broker_reload_command (e.g. "systemctl reload mosquitto"), then ends the
    # outlet's open MQTT session. Neither set: the operator reloads (docs/security.md).
    broker_pid_file: Path | None = None
    broker_reload_command: str | None = None
    broker_reload_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    # How often each ingest worker re-reads which outlets are revoked (their messages are
    # refused); the API of the same process applies its own revocations at once.
    revocation_refresh_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # PII at rest (fleet_server.piivault): the AES-GCM key directory (0700, keys 0600);
    # bodies are emptied this many days after upstream confirmed receipt, checked hourly.
    pii_key_dir: Path = Path("fleet-pii-keys")
    pii_retention_days: Annotated[float, Field(ge=0, le=3650)] = 7.0
    pii_purge_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 3600.0
    # Scanned materials (docs/transactions.md, "Materials"): the largest accepted; chunks
    # are deleted this many days after upstream confirmed the submission (at the same
    # interval), and chunks no submission referenced after material_orphan_days.
    material_max_bytes: Annotated[int, Field(ge=1, le=2**31)] = 64 * 1024 * 1024
    material_retention_days: Annotated[float, Field(ge=0, le=3650)] = 7.0
    material_orphan_days: Annotated[float, Field(ge=0, le=3650)] = 30.0
    # All the materials of one submission together; a submission over it is refused.
    submission_material_max_bytes: Annotated[int, Field(ge=1, le=2**40)] = 128 * 1024 * 1024
    # What one outlet may store per day (outlet_timezone): bodies as JSON plus material
    # chunks. Over it its transactions are refused, counted and alerted until tomorrow.
    outlet_daily_bytes: Annotated[int, Field(ge=1, le=2**50)] = 1024 * 1024 * 1024
    # -- fleet health (docs/fleet-health.md) --
    # Per-outlet token buckets in the ingest: every uplink kind; births and deaths in a
    # bucket of their own whose burst covers a birth storm after a broker restart. Twice
    # the agent's default outbox rate (20/s): a backlog drain plus telemetry stays inside.
    ingest_outlet_rate_per_s: Annotated[float, Field(gt=0)] = 40.0
    ingest_outlet_burst: Annotated[int, Field(ge=1)] = 400
    ingest_presence_rate_per_s: Annotated[float, Field(gt=0)] = 0.5
    ingest_presence_burst: Annotated[int, Field(ge=1)] = 30
    # One stored telemetry snapshot per outlet per interval (for charts); retention.
    health_history_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    health_retention_hours: Annotated[float, Field(gt=0)] = 48.0
    # How often each process shares its page changes with the other server processes
    # of the database and reads theirs (one statement; 0 turns it off: one process).
    live_share_interval_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    # Time-series sink (InfluxDB v2 write API); off while timeseries_url is unset.
    timeseries_url: str | None = None
    timeseries_token: str = ""
    timeseries_org: str = "govedge"
    timeseries_bucket: str = "govedge"
    timeseries_buffer_max: Annotated[int, Field(ge=1)] = 100_000
    timeseries_batch_max: Annotated[int, Field(ge=1)] = 5_000
    timeseries_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    # Alerts: evaluation period, webhooks (JSON list in GOVEDGE_ALERT_WEBHOOKS), retries.
    alert_eval_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # The per-outlet rules of each pass in a child process of the leader (needs a
    # database the child can open: a file or PostgreSQL); off: in the engine's thread.
    alert_eval_process: bool = True
    alert_webhooks: list[str] = Field(default_factory=list)
    alert_webhook_retries: Annotated[int, Field(ge=0, le=20)] = 5
    alert_webhook_backoff_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    # Chat robots (docs/fleet-health.md, "Notifications"), retried like the webhooks:
    # GOVEDGE_ALERT_DINGTALK='[{"url": "...?access_token=...", "secret": "SEC..."}]',
    # GOVEDGE_ALERT_WECOM='["...webhook/send?key=..."]'.
    alert_dingtalk: list[DingTalkSetting] = Field(default_factory=list)
    alert_wecom: list[Annotated[str, Field(pattern=r"^https?://")]] = Field(default_factory=list)
    # /metrics' policy figures carry the region code cut to this many digits (4: city),
    # which bounds their series to regions x outlet kinds (docs/fleet-health.md).
    metrics_region_digits: Annotated[int, Field(ge=2, le=6)] = 4
    # Opening hours of outlets are read in this time zone.
    outlet_timezone: str = "Asia/Shanghai"
    # -- desired config from the fleet (docs/config.md) --
    # The Ed25519 private key (PEM, mode 0600) that signs outlets' configs, kept apart
    # from the database; or the systemd credential govedge-config-signing-key. Without
    # either the server runs, warns, and publishes no configs.
    config_signing_key: Path | None = None
    # Extra PEM public keys handed to agents at enrollment and renewal besides the
    # signing key's own: the next key during a rotation, the old one after it.
    config_public_keys_file: Path | None = None
    # The reconciler's pass when nothing wakes it (a changed scope wakes it at once).
    config_reconcile_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    # How often the campaign engine judges running campaigns (also woken by reports).
    campaign_tick_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    # An outlet's envelope is republished (after a birth or report showing an older
    # version: a broker that lost its retained messages) at most this often.
    config_republish_interval_s: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    # -- agent releases (docs/updates.md) --
    # Where uploaded wheels and bundles are kept (created on the first upload), and the
    # largest upload POST /api/v1/releases takes (streamed to disk, never held in memory).
    releases_dir: Path = Path("fleet-releases")
    release_max_bytes: Annotated[int, Field(ge=1024 * 1024, le=2**40)] = 512 * 1024 * 1024
    # Playbook runs (docs/playbook-runs.md): the playbooks offered (top-level *.yml, roles
    # beside them), a private data dir per run (artifacts kept), and the SSH private key
    # handed to ansible-runner (never logged, never in the database).
    playbooks_dir: Path = Path(__file__).resolve().parent.parent / "playbooks"
    playbook_runs_dir: Path = Path("fleet-playbook-runs")
    playbook_ssh_key: Path | None = None
    # Whether an outlet's access record may say ``ansible_connection: local`` (the run
    # then acts on the fleet server's own machine): only for a lab or tests where this
    # machine stands in for an outlet PC; never in production (fleet_server/playbooks/
    # access.py).
    playbook_allow_local: bool = False
    # Runs at once; more wait (pending) for a free slot.
    playbook_max_concurrent_runs: Annotated[int, Field(ge=1, le=64)] = 4
    # "json" writes one JSON object per log line.
    log_format: Literal["text", "json"] = "text"
    # HTTPS for the API and the web UI (docs/security.md, "The fleet API over TLS"): both
    # files or neither. Without them the server speaks plain HTTP, which ``run`` allows
    # only on a loopback address (behind a reverse proxy on the same host) unless
    # allow_plain_http says otherwise: tokens and session cookies would cross the network
    # in clear.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_plain_http: bool = False

    @model_validator(mode="before")
    @classmethod
    def _state_subdirectories(cls, data: object) -> object:
        """The state directories not given on their own go under ``state_dir``."""
        if not isinstance(data, dict):
            return data
        state = Path(data.get("state_dir") or ".")
        given = {k: v for k, v in data.items() if not (k in STATE_SUBDIRS and v is None)}
        return {**{name: state / sub for name, sub in STATE_SUBDIRS.items()}, **given}

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

    @field_validator("upstream_targets_file")
    @classmethod
    def _check_targets_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"upstream targets file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _check_tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        return self

    @model_validator(mode="after")
    def _check_worker_lease(self) -> Settings:
        if self.worker_lease_s <= 2 * self.worker_heartbeat_s:
            raise ValueError("worker_lease_s must exceed twice worker_heartbeat_s")
        return self

    @property
    def evaluation_rules(self) -> EvaluationRules:
        """The server's 好差评 profile (plus overrides): every outlet's rules, except
        what an outlet's own config sets (``fleet_server.config.evaluation_rules``)."""
        return rules_for(
            self.evaluation_profile,
            days=self.rectification_days,
            working_days=self.rectification_working_days,
        )

    @property
    def broker(self) -> BrokerAddress:
        """The parsed ``mqtt_url``."""
        return parse_mqtt_url(self.mqtt_url)

    @property
    def listen_address(self) -> tuple[str, int]:
        """The parsed ``listen`` address."""
        return parse_listen(self.listen)

    @property
    def tls(self) -> bool:
        """True when the API is served over HTTPS (``tls_cert`` and ``tls_key``)."""
        return self.tls_cert is not None

    def plain_http_refusal(self) -> str | None:
        """Why ``run`` must not start with these settings, or None if it may.

        Plain HTTP is refused on any address but loopback, unless ``allow_plain_http``.
        """
        host, _ = self.listen_address
        if self.tls or self.allow_plain_http or is_loopback_host(host):
            return None
        return (
            f"refusing to serve plain HTTP on {self.listen}: API tokens and session cookies "
            "would cross the network unencrypted. Give --tls-cert and --tls-key "
            "(GOVEDGE_TLS_CERT, GOVEDGE_TLS_KEY), or listen on 127.0.0.1 behind a TLS "
            "reverse proxy, or pass --allow-plain-http (GOVEDGE_ALLOW_PLAIN_HTTP=true) "
            "if the network is otherwise protected"
        )

    def auth_off_refusal(self) -> str | None:
        """Why ``run`` must not start with API authentication off, or None if it may.

        ``api_auth=off`` (every call is an admin) is for development, tests and
        benchmarks on one machine: it is refused on any address a network reaches
        directly (not loopback) and whenever the server speaks TLS (a deployment).
        """
        if self.api_auth == "on":
            return None
        host, _ = self.listen_address
        if self.tls or not is_loopback_host(host):
            return (
                "refusing to start with API authentication off (GOVEDGE_API_AUTH=off) on "
                f"{self.listen}{' with TLS' if self.tls else ''}: every caller would be an "
                "admin. It is for development on 127.0.0.1 only; remove it and log in "
                "(fleet-server users add)"
            )
        return None

    def role_refusal(self) -> str | None:
        """Why ``run`` must not start in this role, or None if it may.

        An ingest process serves only its probes and ``/metrics``, for the machine's own
        service manager and monitoring: never on an address the network reaches.
        """
        host, _ = self.listen_address
        if self.role == "ingest" and not is_loopback_host(host):
            return (
                f"refusing --role ingest on {self.listen}: an ingest process serves only "
                "/healthz, /readyz and /metrics, on a loopback address (127.0.0.1:PORT); "
                "the operator API is --role api (or all)"
            )
        return None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1); names are not
    resolved, so any other name counts as reachable from the network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
