"""Upstream targets, read and validated once from ``GOVEDGE_UPSTREAM_TARGETS_FILE``.

``load_targets`` is the one reader (``fleet-server run``, ``catalogue import``); a file
that fails stops the command with ``TargetsFileError`` as ``FILE: FIELD: reason``, never a
traceback. File format and every check: docs/transactions.md, "Targets file".
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = ["TargetConfig", "TargetsConfig", "TargetsFileError", "load_targets"]

TargetName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
# RFC 9110 token: the characters an HTTP header name may hold.
HeaderName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
]
Secret = Annotated[str, Field(min_length=16, max_length=4096)]
EnvName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]

MAX_FILE_BYTES: Final = 1024 * 1024
_MAX_HEADER_VALUE: Final = 8192
_MIN_SECRET: Final = 16
# Set by the HTTP adapter on every request; a target may not override them.
_RESERVED_HEADERS: Final = frozenset(
    {"content-type", "content-length", "host", "idempotency-key", "transfer-encoding"}
)
_BAD_VALUE_CHAR: Final = re.compile(r"[^\t\x20-\x7e]")


class TargetsFileError(ValueError):
    """The targets file is missing, unreadable or invalid; the message says where."""


def _check_header_value(name: str, value: str) -> None:
    """Printable ASCII only, as an HTTP client sends it; the error names no value."""
    if len(value) > _MAX_HEADER_VALUE:
        raise ValueError(f"header {name}: value longer than {_MAX_HEADER_VALUE} characters")
    bad = _BAD_VALUE_CHAR.search(value)
    if bad is not None:
        char = bad.group()
        what = "a line break or control character" if ord(char) < 0x80 else "non-ASCII text"
        raise ValueError(
            f"header {name}: value has {what} at position {bad.start() + 1} "
            f"(U+{ord(char):04X}); HTTP header values must be printable ASCII "
            "(replace any placeholder with the real value)"
        )


class TargetConfig(BaseModel):
    """One upstream platform reached by the generic HTTP JSON adapter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: TargetName
    url: HttpUrl
    headers: dict[HeaderName, str] = Field(default_factory=dict, max_length=64)
    hmac_secret: Secret | None = Field(default=None, repr=False)
    hmac_secret_env: EnvName | None = None
    signature_header: HeaderName = "X-Govedge-Signature"
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 12
    backoff_base_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    backoff_max_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    breaker_threshold: Annotated[int, Field(ge=1, le=1000)] = 5
    breaker_cooldown_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: HttpUrl) -> HttpUrl:
        if value.username is not None or value.password is not None:
            raise ValueError("must not carry a user or password (use headers or a secret)")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name} is set by the server itself")
            _check_header_value(name, text)
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> TargetConfig:
        if self.hmac_secret is not None and self.hmac_secret_env is not None:
            raise ValueError("give hmac_secret or hmac_secret_env, not both")
        if self.hmac_secret_env is not None:
            from_env = os.environ.get(self.hmac_secret_env)
            if not from_env:
                raise ValueError(f"environment variable {self.hmac_secret_env} is not set")
            if len(from_env) < _MIN_SECRET:
                raise ValueError(
                    f"environment variable {self.hmac_secret_env} holds fewer than "
                    f"{_MIN_SECRET} characters"
                )
        signature = self.signature_header.lower()
        if signature in _RESERVED_HEADERS or signature in {n.lower() for n in self.headers}:
            raise ValueError(f"signature_header {self.signature_header} clashes with a header")
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError("backoff_base_s must not exceed backoff_max_s")
        return self

    def secret(self) -> bytes | None:
        """The HMAC key, from the file or the environment."""
        if self.hmac_secret_env is not None:
            return os.environ[self.hmac_secret_env].encode()
        return self.hmac_secret.encode() if self.hmac_secret is not None else None


class TargetsConfig(BaseModel):
    """Every target and which one receives evaluations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    evaluation_target: TargetName | None = None
    targets: list[TargetConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> TargetsConfig:
        names = [target.name for target in self.targets]
        if len(names) != len(set(names)):
            raise ValueError("target names must be unique")
        if self.evaluation_target is not None and self.evaluation_target not in names:
            raise ValueError(f"evaluation_target {self.evaluation_target!r} is not a target")
        return self

    def get(self, name: str) -> TargetConfig | None:
        """The target called ``name``, if configured."""
        return next((target for target in self.targets if target.name == name), None)

    @property
    def names(self) -> list[str]:
        """Configured target names."""
        return [target.name for target in self.targets]


def _read(path: Path) -> Any:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise TargetsFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return json.loads(text)
    if suffix == ".toml":
        return tomllib.loads(text)
    if suffix in {".yaml", ".yml"}:
        return yaml.safe_load(text)
    raise TargetsFileError(f"{path}: use .json, .toml, .yaml or .yml")


def load_targets(path: Path) -> TargetsConfig:
    """Read and validate ``path``; raise ``TargetsFileError`` saying what is wrong."""
    try:
        raw = _read(path)
    except TargetsFileError:
        raise
    except (OSError, ValueError, RecursionError, yaml.YAMLError) as exc:
        # ValueError covers UnicodeDecodeError, JSONDecodeError and TOMLDecodeError.
        raise TargetsFileError(f"{path}: cannot read: {_first_line(exc)}") from None
    if not isinstance(raw, dict):
        raise TargetsFileError(f"{path}: must hold a table (evaluation_target, targets)")
    try:
        return TargetsConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(error["loc"], error["msg"]) for error in exc.errors()[:5])
        more = len(exc.errors()) - 5
        if more > 0:
            problems += f" (and {more} more)"
        raise TargetsFileError(f"{path}: {problems}") from None
    except RecursionError:
        raise TargetsFileError(f"{path}: nested too deeply") from None


def _describe(loc: tuple[int | str, ...], message: str) -> str:
    """``targets[0].timeout_s: reason`` (no input values: they may be secrets)."""
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return f"{field.removeprefix('.') or 'file'}: {message.removeprefix('Value error, ')}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
