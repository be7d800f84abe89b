"""The agent's one typed, frozen settings object.

Sources, highest priority first: command-line options, ``GOVEDGE_*`` environment
variables, the TOML file given with ``--config``, then the defaults below. Loading fails
fast with a ``SettingsError`` whose message is one line naming the bad setting.

``mqtt_url`` is ``mqtts://host[:port]`` (port 8883) in production: TLS with the outlet's
client certificate from ``edge-agent enroll``, kept in ``keys_dir`` (default
``DATA_DIR/tls``; a provisioned PC keeps it apart from the data dir). ``mqtt://host[:port]``
(port 1883) is plain and anonymous, for development and tests only; the agent logs a
warning when it uses it. Credentials never go in the URL.

Hardware and transactions: ``profiles_dir`` (None = the shipped ``device_profiles/``),
``devices`` (the ``[[devices]]`` tables of network devices; TOML or JSON in the env),
``outbox_quota_bytes`` and ``outbox_rate_per_s``, ``simulate`` (attach a simulator of
every device kind), ``simulate_ratings`` (a simulated citizen's stars at its pad) and
``simulate_pcsc`` (the simulated social-security card: None = when pcscd is installed),
``queue_business_types``, ``queue_windows`` (the ``[[queue_windows]]`` tables: each
window's business types and devices), ``local_api_port`` and ``timezone``.
``config_keys_file`` names extra fleet config-signing public keys (docs/config.md).

The environment: ``GOVEDGE_<SETTING>``, the name matched without regard to case (one
variable per setting, no nesting). A list or table setting (``devices``,
``queue_windows``, ``queue_business_types``, ``simulate_ratings``, ``update_find_links``)
is JSON; JSON ``null`` leaves it unset; a value that is not JSON is a ``SettingsError``.
Every other value is taken as text and converted by the field's type (``"30"``,
``"true"``). An empty value is a value (``GOVEDGE_SIMULATE=`` is invalid, not unset), and
``GOVEDGE_*`` variables naming no setting are ignored: the fleet server's share the prefix.
This is what pydantic-settings did for this model. The agent does it itself because
pydantic-settings costs the agent about 1.1 MiB of RSS (its 22 modules and python-dotenv's
4; 63.6 -> 62.5 MiB importing what ``edge-agent run`` imports) for one loop over
``os.environ``, against a 64 MiB budget (docs/performance.md, "Agent footprint"). The
fleet server keeps pydantic-settings.
"""

from __future__ import annotations

import json
import os
import tomllib
import types
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import is_dataclass
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge_agent.errors import SettingsError
from edge_agent.settings_models import (
    DEFAULT_BUSINESS_TYPES,
    GIB,
    BusinessTypeSetting,
    NetworkDeviceSetting,
    QueueWindowSetting,
    check_business_types,
    check_devices,
    check_timezone,
    check_windows,
)
from govedge_wire import is_valid_outlet_id
from govedge_wire.config.models import check_qr_template

ENV_PREFIX = "GOVEDGE_"
DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class AgentSettings(BaseModel):
    """Everything one agent process needs to know before it connects.

    Built from the given values alone: ``load_settings`` adds the environment and the
    TOML file.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    outlet_id: str
    data_dir: Path
    # The private key, certificate, pinned fleet CA and config-signing keys: apart from
    # the data dir (which is archived and copied) on a provisioned PC. Unset: DATA_DIR/tls.
    keys_dir: Path
    telemetry_interval_s: Annotated[float, Field(gt=0, le=86400)] = 30.0
    keepalive_s: Annotated[int, Field(ge=1, le=65535)] = 30
    reconnect_base_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    reconnect_cap_s: Annotated[float, Field(gt=0, le=86400)] = 60.0
    mqtt_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"
    profiles_dir: Path | None = None
    devices: tuple[NetworkDeviceSetting, ...] = Field(default=(), max_length=256)
    outbox_quota_bytes: Annotated[int, Field(ge=1024 * 1024)] = 2 * GIB
    outbox_rate_per_s: Annotated[float, Field(gt=0, le=10000)] = 20.0
    # None: the systemd credential govedge-outbox-key if passed, else DATA_DIR/outbox.key.
    outbox_key_file: Path | None = None
    simulate: bool = False
    # With ``simulate``: a simulated citizen rates every request on the simulated pad
    # with these stars in turn (demos; edge_agent/devices/evaluation_pad/citizen.py).
    simulate_ratings: tuple[Annotated[int, Field(ge=1, le=5)], ...] = Field(
        default=(), max_length=64
    )
    # With ``simulate``: the social-security card through pcscd + vpcd. None: when both
    # are installed; False leaves it out (pcscd is one per machine: a second simulated
    # outlet on the same PC, or a test run in parallel, would share its one reader).
    simulate_pcsc: bool | None = None
    queue_business_types: tuple[BusinessTypeSetting, ...] = Field(
        default=DEFAULT_BUSINESS_TYPES, max_length=26
    )
    # How long after its slot's end an appointment (预约) can still check in; later it
    # has expired as a no-show (docs/hall-pages.md, "Appointments").
    queue_appointment_grace_minutes: Annotated[int, Field(ge=0, le=240)] = 15
    # Empty: no window (with ``simulate``: the simulated outlet's windows, simulate.py).
    queue_windows: tuple[QueueWindowSetting, ...] = Field(default=(), max_length=256)
    # 0 picks a free port (tests, several agents on one machine); it is printed at start.
    local_api_port: Annotated[int, Field(ge=0, le=65535)] = 8765
    # The province's 好差评 page of a ticket, printed on it as a QR code ("" = none);
    # {case_number} and {outlet} are filled in (docs/hall-pages.md).
    evaluation_qr_url: str = ""
    timezone: str = "Asia/Shanghai"
    # Announcements played on this PC's audio output (docs/queue.md, "Voice at the
    # outlet"): off (a hall display page plays them), pulse (PulseAudio or PipeWire,
    # paplay) or alsa (aplay); the sink or ALSA device (None: the default one); the
    # pulse server a system service reaches (e.g. unix:/run/user/1000/pulse/native);
    # the volume in percent (a fleet config's queue.voice.volume wins).
    voice_output: Literal["off", "pulse", "alsa"] = "off"
    voice_device: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    voice_pulse_server: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    voice_volume: Annotated[int, Field(ge=0, le=100)] = 100
    # Config-signing public keys ({key_id: base64 raw Ed25519 key}) for an outlet set up
    # without enrollment; enrolled agents keep theirs in KEYS_DIR/config-keys.json.
    config_keys_file: Path | None = None
    # Agent updates (docs/updates.md, "The agent's installer"): the install home with
    # versions/, current, good and update/; uv's binary (None: python -m venv + pip);
    # wheelhouses a wheel release finds its dependencies in (no package index is used);
    # bytes kept free beyond what a download and its unpacked venv need.
    install_home: Path = Path("/opt/govedge")
    update_uv_bin: Path | None = None
    update_find_links: tuple[Path, ...] = ()
    # Pins (a requirements file) a wheel release's dependencies are held to; a bundle's
    # own *.txt locks are used as well.
    update_constraints: Path | None = None
    update_disk_reserve_bytes: Annotated[int, Field(ge=0)] = 256 * 1024 * 1024

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("evaluation_qr_url")
    @classmethod
    def _qr_template(cls, value: str) -> str:
        return check_qr_template(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("queue_business_types")
    @classmethod
    def _check_business_types(
        cls, value: tuple[BusinessTypeSetting, ...]
    ) -> tuple[BusinessTypeSetting, ...]:
        return check_business_types(value)

    @field_validator("queue_windows")
    @classmethod
    def _check_windows(
        cls, value: tuple[QueueWindowSetting, ...], info: ValidationInfo
    ) -> tuple[QueueWindowSetting, ...]:
        types = info.data.get("queue_business_types")
        if types is None:  # already invalid; that error is the one reported
            return value
        return check_windows(value, types)

    @field_validator("devices")
    @classmethod
    def _check_devices(
        cls, value: tuple[NetworkDeviceSetting, ...]
    ) -> tuple[NetworkDeviceSetting, ...]:
        return check_devices(value)

    @field_validator("outlet_id")
    @classmethod
    def _check_outlet_id(cls, value: str) -> str:
        if not is_valid_outlet_id(value):
            raise ValueError(
                "must be 1-64 characters of letters, digits, '_', '.', '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("must look like mqtts://host:port (or mqtt:// for development)")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (the client certificate is the login)")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be mqtt[s]://host:port with no path or query")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        if not parts.hostname or port == 0:
            raise ValueError("must name a host (and a port 1-65535 if any)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_keys_dir(cls, data: Any) -> Any:
        # Every install before keys_dir existed keeps its keys in DATA_DIR/tls. A data_dir
        # that is no path (``data_dir = true`` in the TOML) is left to its own error.
        if (
            isinstance(data, dict)
            and data.get("keys_dir") is None
            and isinstance(data.get("data_dir"), str | PurePath)
            and data["data_dir"]
        ):
            return {**data, "keys_dir": Path(data["data_dir"]) / "tls"}
        return data

    @model_validator(mode="after")
    def _check_backoff(self) -> AgentSettings:
        if self.reconnect_cap_s < self.reconnect_base_s:
            raise ValueError("reconnect_cap_s must not be smaller than reconnect_base_s")
        return self

    @property
    def mqtt_host(self) -> str:
        """Broker host name from ``mqtt_url``."""
        return urlsplit(self.mqtt_url).hostname or ""

    @property
    def mqtt_tls(self) -> bool:
        """True for ``mqtts://``: TLS with the enrolled client certificate."""
        return urlsplit(self.mqtt_url).scheme == "mqtts"

    @property
    def mqtt_port(self) -> int:
        """Broker port from ``mqtt_url`` (1883, or 8883 for mqtts, when absent)."""
        default = DEFAULT_MQTTS_PORT if self.mqtt_tls else DEFAULT_MQTT_PORT
        return urlsplit(self.mqtt_url).port or default


def read_toml(path: Path) -> dict[str, Any]:
    """Read a settings TOML file; unknown keys and syntax errors are ``SettingsError``."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # tomllib decodes UTF-8 itself and lets this through
        raise SettingsError(
            f"config file {path} is not UTF-8 (byte {exc.start + 1} of the file)"
        ) from None
    unknown = sorted(set(data) - set(AgentSettings.model_fields))
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load_settings(*, config_file: Path | None = None, **cli: Any) -> AgentSettings:
    """Build the settings from CLI values (``None`` = not given), env, TOML and defaults."""
    toml = read_toml(config_file) if config_file is not None else {}
    environment = read_environment(os.environ)
    overrides = {key: value for key, value in cli.items() if value is not None}
    # A setting comes whole from the first source that has it: none of them merges into
    # another's value (pydantic-settings merged two JSON objects, which no field takes).
    try:
        return AgentSettings.model_validate({**toml, **environment, **overrides})
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None


def _is_json_type(annotation: object) -> bool:
    """A sequence (not text), set, mapping, model or dataclass, also inside ``Annotated``
    or a union: the types pydantic-settings read as JSON from the environment."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_json_type(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(_is_json_type(arg) for arg in get_args(annotation))
    kind = origin if isinstance(origin, type) else annotation
    if not isinstance(kind, type) or issubclass(kind, (str, bytes, bytearray)):
        return False
    return issubclass(kind, (Sequence, AbstractSet, Mapping, BaseModel)) or is_dataclass(kind)


# The settings whose environment value is JSON; every other one is text for pydantic.
JSON_SETTINGS = frozenset(
    name for name, field in AgentSettings.model_fields.items() if _is_json_type(field.annotation)
)


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as ``GOVEDGE_*`` variables (module docstring), by field name.

    A JSON setting's value that is not JSON is a ``SettingsError`` naming the setting and
    the variable.
    """
    prefix = ENV_PREFIX.lower()
    found: dict[str, tuple[str, str]] = {}  # lower-case name: (variable, value)
    for variable, value in environ.items():
        if variable.lower().startswith(prefix):
            found[variable.lower()] = (variable, value)  # of two spellings, the later one
    values: dict[str, Any] = {}
    for name in AgentSettings.model_fields:
        if (given := found.get(prefix + name)) is None:
            continue
        variable, text = given
        if name not in JSON_SETTINGS:
            values[name] = text
            continue
        try:
            decoded = json.loads(text)
        except ValueError as exc:
            raise SettingsError(
                f"invalid setting {name}: {variable} is not valid JSON ({exc})"
            ) from None
        except RecursionError:
            raise SettingsError(
                f"invalid setting {name}: {variable} is nested too deeply"
            ) from None
        if decoded is not None:  # JSON null: not set here
            values[name] = decoded
    return values


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    name = (
        "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        ).removeprefix(".")
        or "settings"
    )
    top = str(error["loc"][0]) if error["loc"] else name
    where = f"--{top.replace('_', '-')}, {ENV_PREFIX}{top.upper()} or {top} in the TOML file"
    if error["type"] == "missing" and top != name:  # a field inside a table
        return f"missing setting {name} (in the {top} table)"
    if error["type"] == "missing":
        return f"missing setting {name} (set {where})"
    message = str(error["msg"]).removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if message.startswith("["):  # the validator named the entry and field: queue_windows[1].pad
        return f"invalid setting {name}{message}{more}"
    return f"invalid setting {name}: {message}{more}"
