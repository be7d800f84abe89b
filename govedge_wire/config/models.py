"""The desired-config document: what the fleet may set at an outlet (docs/config.md).

Every field is optional, so one model validates both a single scope's document (which
sets a few keys, ``None`` meaning "delete this key", see ``layers.merge_layers``) and the
merged, effective config. Unknown keys are refused, like everywhere in ``govedge_wire``.
``QueueWindow`` and ``BusinessType`` are also the agent's own settings shapes: the agent's
``QueueWindowSetting`` and ``BusinessTypeSetting`` subclass them (edge_agent/settings_models.py).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# An hour span "HH:MM-HH:MM" in local time; 24:00 may end a span (up to midnight).
SPAN_PATTERN: Final = r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
# An appointment's time slot "HH:MM-HH:MM" in outlet-local time, or "" for the whole day.
APPOINTMENT_SLOT_PATTERN: Final = (
    r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]-(?:[01][0-9]|2[0-3]):[0-5][0-9])?$"
)
# A device profile id, as device_profiles/schema.json defines it.
PROFILE_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{1,47}$"
# Setting, alert rule and parameter names: snake_case identifiers.
KEY_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"

DeviceId = Annotated[str, Field(min_length=1, max_length=128)]
BusAddress = Annotated[int, Field(ge=1, le=254)]
Span = Annotated[str, Field(pattern=SPAN_PATTERN)]
Key = Annotated[str, Field(pattern=KEY_PATTERN)]
ProfileId = Annotated[str, Field(pattern=PROFILE_ID_PATTERN)]
ChannelCode = Annotated[str, Field(pattern=r"^[0-9]{1,2}$")]
Scalar = bool | int | float | str
LevelCoding = Literal["gbt39046", "zhejiang"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BusinessType(_Part):
    """One queue business type: code, one-letter ticket prefix, name printed on tickets."""

    code: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
    prefix: Annotated[str, Field(pattern=r"^[A-Z]$")]
    name: Annotated[str, Field(min_length=1, max_length=32)]


class QueueWindow(_Part):
    """A service window and the devices that belong to it.

    ``window`` is what the hall hears and the LED shows (``请A012号到3号窗口``). Devices
    are named by their stable ``device_id``; the LED controller and the keypad bus serve
    several windows, so each also takes this window's bus address (default: the window
    number itself, which needs a numeric window name).
    """

    window: Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[0-9A-Za-z_-]+$")]
    business_types: tuple[Annotated[str, Field(min_length=1, max_length=32)], ...] = Field(
        min_length=1, max_length=26
    )
    pad: DeviceId | None = None
    led: DeviceId | None = None
    led_address: BusAddress | None = None
    keypad: DeviceId | None = None
    keypad_address: BusAddress | None = None

    def address(self, given: int | None) -> int | None:
        """The bus address: ``given``, else the window number, else None."""
        if given is not None:
            return given
        return int(self.window) if self.window.isdigit() and 1 <= int(self.window) <= 254 else None


class VoiceConfig(_Part):
    """Hall announcements: spoken or not, and how loud (percent)."""

    enabled: bool | None = None
    volume: Annotated[int, Field(ge=0, le=100)] | None = None


class QueueAppointment(_Part):
    """One booking (预约) of the day, pushed to the outlet: no name, ID or phone number."""

    reference: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{4,40}$")]
    day: date
    business_type: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
    priority: Annotated[int, Field(ge=1, le=9)] = 1
    slot: Annotated[str, Field(pattern=APPOINTMENT_SLOT_PATTERN)] = ""


class QueueConfig(_Part):
    """The outlet queue: windows, the ticket format, the voice and the day's bookings."""

    windows: tuple[QueueWindow, ...] | None = Field(default=None, max_length=256)
    # The ticket format: each queue's prefix letter (A012) and the name on its tickets.
    business_types: tuple[BusinessType, ...] | None = Field(
        default=None, min_length=1, max_length=26
    )
    # What the LED shows and the hall hears; {ticket} and {window} are filled in.
    announcement: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    voice: VoiceConfig | None = None
    # Bookings the agent adds or updates by reference when the config is applied (one
    # already checked in is kept); the clerk app may load more (POST /v1/appointments).
    appointments: tuple[QueueAppointment, ...] | None = Field(default=None, max_length=5000)

    @field_validator("announcement")
    @classmethod
    def _placeholders(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            value.format(ticket="A001", window="1")
        except (KeyError, IndexError, ValueError):
            raise ValueError("may use only the placeholders {ticket} and {window}") from None
        if "{ticket}" not in value:
            raise ValueError("must contain {ticket}")
        return value

    @field_validator("windows")
    @classmethod
    def _distinct_windows(
        cls, value: tuple[QueueWindow, ...] | None
    ) -> tuple[QueueWindow, ...] | None:
        names = [w.window for w in value or ()]
        if len(set(names)) != len(names):
            raise ValueError("a window is declared twice")
        return value

    @field_validator("business_types")
    @classmethod
    def _distinct_types(
        cls, value: tuple[BusinessType, ...] | None
    ) -> tuple[BusinessType, ...] | None:
        for attr in ("code", "prefix"):
            values = [getattr(t, attr) for t in value or ()]
            if len(set(values)) != len(values):
                raise ValueError(f"business type {attr}s must be distinct")
        return value


class IndicatorTag(_Part):
    """One option the evaluation pad shows beside the five levels (its ``evalDetail`` code)."""

    code: Annotated[str, Field(min_length=1, max_length=32)]
    label: Annotated[str, Field(min_length=1, max_length=32)]


class EvaluationConfig(_Part):
    """The region's 好差评 profile, read by the agent's pads and the server's rules alike."""

    # Direction of the level codes: gbt39046 (1 = 非常满意) or zhejiang (1 = 非常不满意).
    level_coding: LevelCoding | None = None
    # Channel code (pf) → name; the server accepts only these channels.
    channels: dict[ChannelCode, Annotated[str, Field(min_length=1, max_length=32)]] | None = None
    # Channels whose ratings are system defaults, not a citizen's (Zhejiang: 7).
    default_channels: tuple[ChannelCode, ...] | None = None
    # 系统默认评价: the level (stars, 5 = 非常满意) recorded, on the first default
    # channel, for a case the citizen did not rate on the pad, this long after the pad
    # timed out; unset: nothing is recorded (docs/evaluations.md, "Default ratings").
    default_stars: Annotated[int, Field(ge=1, le=5)] | None = None
    default_after_s: Annotated[int, Field(ge=0, le=90 * 86400)] | None = None
    # The pad's coding of the options shown with the levels.
    indicator_tags: tuple[IndicatorTag, ...] | None = Field(default=None, max_length=16)
    rectification_days: Annotated[int, Field(ge=1, le=90)] | None = None
    rectification_working_days: bool | None = None
    # The province's 好差评 page for a case, as a QR code on tickets and on the console of
    # a window without a pad: http(s), with {case_number} and {outlet} filled in. It wins
    # over the agent's local evaluation_qr_url (docs/hall-pages.md).
    qr_url: Annotated[str, Field(max_length=400)] | None = None

    @field_validator("qr_url")
    @classmethod
    def _qr_template(cls, value: str | None) -> str | None:
        return None if value is None else check_qr_template(value)


def check_qr_template(value: str) -> str:
    """An evaluation QR URL template: empty, or http(s) with only the known fields."""
    if not value:
        return value
    if not value.startswith(("https://", "http://")) or len(value) > 400:
        raise ValueError("the evaluation QR URL must be an http(s) URL of at most 400 characters")
    try:
        value.format(case_number="T20240101-A001", outlet="outlet")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"the evaluation QR URL may use only {{case_number}} and {{outlet}}: {exc}"
        ) from None
    return value


class TelemetryConfig(_Part):
    """How often the agent samples and sends host and device health (seconds)."""

    interval_s: Annotated[float, Field(gt=0, le=86400)] | None = None


class OutboxConfig(_Part):
    """How fast the outbox sends, and how much it may hold on disk."""

    rate_per_s: Annotated[float, Field(gt=0, le=10000)] | None = None
    quota_bytes: Annotated[int, Field(ge=1024 * 1024)] | None = None


class OpeningHours(_Part):
    """Local opening hours per weekday; a day left out or empty is closed.

    ``always_open`` (24-hour kiosks) wins over the days. ``quiet_window`` is when a
    change that takes devices away from citizens may be applied where nothing closes.
    """

    time_zone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    always_open: bool | None = None
    mon: tuple[Span, ...] | None = None
    tue: tuple[Span, ...] | None = None
    wed: tuple[Span, ...] | None = None
    thu: tuple[Span, ...] | None = None
    fri: tuple[Span, ...] | None = None
    sat: tuple[Span, ...] | None = None
    sun: tuple[Span, ...] | None = None
    quiet_window: Span | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: no file can have it
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    @classmethod
    def _ordered(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        spans = [tuple(s.split("-")) for s in value or ()]
        for start, end in spans:
            if start >= end:  # "HH:MM" strings sort as times
                raise ValueError(f"span {start}-{end} ends before it starts")
        for (_, end), (start, _) in zip(sorted(spans), sorted(spans)[1:], strict=False):
            if start < end:
                raise ValueError("spans of one day overlap")
        return value


class DesiredConfig(_Part):
    """Everything an operator may set at an outlet from the fleet; every part optional."""

    queue: QueueConfig | None = None
    evaluation: EvaluationConfig | None = None
    telemetry: TelemetryConfig | None = None
    outbox: OutboxConfig | None = None
    log_level: LogLevel | None = None
    # Driver settings overrides: profile id → setting → value (baud rates, timeouts, …).
    devices: dict[ProfileId, dict[Key, Scalar]] | None = None
    opening_hours: OpeningHours | None = None
    # Alert thresholds: rule → parameter → value (the server checks the names).
    alerts: dict[Key, dict[Key, Scalar]] | None = None

    @model_validator(mode="after")
    def _windows_use_known_types(self) -> DesiredConfig:
        # Only checkable when one document sets both; the agent checks the rest on apply.
        queue = self.queue
        if queue is None or queue.windows is None or queue.business_types is None:
            return self
        codes = {t.code for t in queue.business_types}
        for window in queue.windows:
            unknown = sorted(set(window.business_types) - codes)
            if unknown:
                raise ValueError(
                    f"window {window.window!r} serves unknown business type(s) {', '.join(unknown)}"
                )
        return self
