"""Where alert notifications go and in what shape: the generic webhook (the payload as
JSON), a DingTalk custom robot and a WeCom (企业微信) group robot.

The robots get a short markdown message built from the alert's rule, severity, state,
outlet, device, summary and times only; an alert's ``detail`` is left out, so nothing
a rule may one day put there reaches a chat group. A DingTalk robot with a signing
secret gets ``timestamp`` (ms) and ``sign`` = base64(HMAC-SHA256(secret,
"{timestamp}\\n{secret}")) added to its URL per attempt (DingTalk refuses a timestamp
more than an hour off). Both robots answer HTTP 200 with ``errcode`` 0 when they took
the message; any other ``errcode`` is a failure, retried like a 5xx.
Configuration: docs/fleet-health.md, "Notifications".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import quote_plus

import httpx

from fleet_server.redact import redact_url

__all__ = ["Destination", "DingTalkRobot", "GenericWebhook", "WeComRobot", "dingtalk_sign"]

# WeCom's markdown content is limited to 4096 bytes, DingTalk's to 20000: stay under both.
_MAX_BYTES: Final = 3800
_EVENTS: Final = {"opened": "告警", "updated": "告警变更", "resolved": "已恢复"}


class Destination(Protocol):
    """One place notifications are POSTed to."""

    @property
    def label(self) -> str:
        """What logs may name it by: scheme and host, never a token."""
        ...

    def request(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The URL and JSON body of one attempt to send ``payload``."""
        ...

    def accepted(self, response: httpx.Response) -> bool:
        """Whether ``response`` means the notification was taken."""
        ...


@dataclass(frozen=True, slots=True)
class GenericWebhook:
    """The alert payload as JSON to any URL; a 2xx answer takes it."""

    url: str

    @property
    def label(self) -> str:
        return redact_url(self.url)

    def request(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return self.url, payload

    def accepted(self, response: httpx.Response) -> bool:
        return response.is_success


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign`` for ``timestamp_ms``, URL-encoded as it goes in the query."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


@dataclass(frozen=True, slots=True)
class DingTalkRobot:
    """A DingTalk custom robot: ``url`` with its ``access_token``; ``secret`` (SEC…) when
    the robot is secured by signing."""

    url: str
    secret: str | None = field(default=None, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    @property
    def label(self) -> str:
        return redact_url(self.url)

    def request(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        url = self.url
        if self.secret:
            stamp = int(self.clock() * 1000)
            joiner = "&" if "?" in url else "?"
            url = f"{url}{joiner}timestamp={stamp}&sign={dingtalk_sign(self.secret, stamp)}"
        title, text = _markdown(payload)
        return url, {"msgtype": "markdown", "markdown": {"title": title, "text": text}}

    def accepted(self, response: httpx.Response) -> bool:
        return _errcode_zero(response)


@dataclass(frozen=True, slots=True)
class WeComRobot:
    """A WeCom group robot: its webhook URL with the ``key``."""

    url: str

    @property
    def label(self) -> str:
        return redact_url(self.url)

    def request(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        _, text = _markdown(payload)
        return self.url, {"msgtype": "markdown", "markdown": {"content": text}}

    def accepted(self, response: httpx.Response) -> bool:
        return _errcode_zero(response)


def _errcode_zero(response: httpx.Response) -> bool:
    if not response.is_success:
        return False
    try:
        answer = response.json()
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("errcode") == 0


def _markdown(payload: dict[str, Any]) -> tuple[str, str]:
    """A title and a markdown message of the alert's plain fields (never ``detail``)."""
    event = str(payload.get("event", ""))
    rule = str(payload.get("rule", ""))
    severity = str(payload.get("severity", ""))
    title = f"govedge {_EVENTS.get(event, event)} {severity} {rule}"
    lines = [
        f"### {title}",
        f"- 事件 event: {event}",
        f"- 规则 rule: {rule}",
        f"- 级别 severity: {severity}",
        f"- 网点 outlet: {payload.get('outlet_id') or '-'}",
    ]
    if payload.get("device_id"):
        lines.append(f"- 设备 device: {payload['device_id']}")
    lines.append(f"- 摘要 summary: {payload.get('summary', '')}")
    for key, name in (("opened_at", "开始 opened"), ("resolved_at", "恢复 resolved")):
        if payload.get(key):
            lines.append(f"- {name}: {payload[key]}")
    if payload.get("id") is not None:
        lines.append(f"- 告警编号 alert id: {payload['id']}")
    text = "\n".join(lines)
    while len(text.encode()) > _MAX_BYTES:
        text = text[: len(text) - 100] + "…"
    return title, text
