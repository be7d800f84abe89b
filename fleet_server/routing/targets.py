"""Upstream targets, read once from the file ``GOVEDGE_UPSTREAM_TARGETS_FILE``.

The file is JSON (``.json``), TOML (``.toml``) or YAML (``.yaml``/``.yml``)::

    evaluation_target: haochaping          # where every evaluation goes
    targets:
      - name: zj-platform                  # referenced by catalogue rows' "target"
        url: https://platform.example/api/cases
        headers: {Authorization: "Bearer ..."}   # e.g. the auth header
        hmac_secret_env: ZJ_PLATFORM_SECRET       # or hmac_secret: "..." (not both)
        signature_header: X-Govedge-Signature     # "sha256=<hex HMAC of the body>"
        timeout_s: 10
        connect_timeout_s: 3
        max_attempts: 12
        backoff_base_s: 1
        backoff_max_s: 600
        breaker_threshold: 5
        breaker_cooldown_s: 30

A file that fails to load or validate stops the server at start with the reason
(never a silent empty configuration).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

__all__ = ["TargetConfig", "TargetsConfig", "TargetsFileError", "load_targets"]

TargetName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class TargetsFileError(ValueError):
    """The targets file is missing, unreadable or invalid."""


class TargetConfig(BaseModel):
    """One upstream platform reached by the generic HTTP JSON adapter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: TargetName
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    hmac_secret: str | None = Field(default=None, repr=False)
    hmac_secret_env: str | None = None
    signature_header: str = "X-Govedge-Signature"
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 12
    backoff_base_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    backoff_max_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    breaker_threshold: Annotated[int, Field(ge=1, le=1000)] = 5
    breaker_cooldown_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @model_validator(mode="after")
    def _one_secret(self) -> TargetConfig:
        if self.hmac_secret is not None and self.hmac_secret_env is not None:
            raise ValueError("give hmac_secret or hmac_secret_env, not both")
        if self.hmac_secret_env is not None and not os.environ.get(self.hmac_secret_env):
            raise ValueError(f"environment variable {self.hmac_secret_env} is not set")
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
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        if isinstance(exc, TargetsFileError):
            raise
        raise TargetsFileError(f"{path}: cannot read: {exc}") from None
    try:
        return TargetsConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
        )
        raise TargetsFileError(f"{path}: {problems}") from None
