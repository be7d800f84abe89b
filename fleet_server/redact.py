"""Secrets out of log lines: webhook URLs carry tokens (DingTalk ``access_token``, WeCom
``key``), and httpx puts the full URL into its request log and its exception texts.

``redact_url`` keeps only what an operator needs to tell targets apart (scheme, host,
port); ``redact_text`` rewrites every URL in a finished log line (user info and query
replaced by ``***``); ``RedactingFormatter`` applies it to every line, tracebacks
included. Entry points install the formatter (``fleet_server.cli``).
"""

from __future__ import annotations

import logging
import re
from typing import Final
from urllib.parse import urlsplit

__all__ = ["RedactingFormatter", "redact_text", "redact_url"]

_URL: Final = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)"
    r"(?P<user>[^/\s@\"'<>]*@)?"
    r"(?P<rest>[^\s?#\"'<>]*)"
    r"(?P<query>\?[^\s#\"'<>]*)?"
)


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no user info, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or '?'}://{shown}{port}/…"


def _scrub(match: re.Match[str]) -> str:
    user = "***@" if match.group("user") else ""
    query = "?***" if match.group("query") else ""
    return f"{match.group('scheme')}{user}{match.group('rest')}{query}"


def redact_text(text: str) -> str:
    """``text`` with every URL's user info and query string replaced by ``***``."""
    return _URL.sub(_scrub, text)


class RedactingFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose output (message and traceback) is ``redact_text``-ed."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted line, redacted."""
        return redact_text(super().format(record))
