"""One JSON object per log line (``GOVEDGE_LOG_FORMAT=json``), for log shippers."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from fleet_server.redact import redact_text


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "thread"[, "exc"]}``; the message is formatted
    with its %-args first, so what callers chose to log is all that appears; URLs in it
    lose their user info and query (``fleet_server.redact``)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(entry, ensure_ascii=False))
