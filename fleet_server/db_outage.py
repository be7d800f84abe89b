"""While the database cannot be reached: 503 with ``Retry-After``, never a 500.

A route (or a guard: token and session checks read the database) that meets a lost or
refused database connection raises SQLAlchemy's ``OperationalError``; the handler here
answers it as an outage:

- API and other non-page paths: ``application/problem+json`` (RFC 9457) with the
  ``detail`` sentence every error answer has; nothing of the failed statement, the
  driver's message or the database's address.
- Pages under ``/ui``: a short page in the user's language saying the database is
  unreachable (the chosen language cookie, zh-CN by default).

Every such answer is counted (``govedge_http_refused{reason="database_unavailable"}``).
The first of an outage is logged once, as a warning with the driver's error class only;
when the engine connects again the outage is over (logged once more). Nothing else is
needed to recover: the pool pre-pings its connections (``fleet_server.db``).
docs/deploy.md, "PostgreSQL: primary, streaming standby, failover".
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from html import escape
from typing import Any, Final

from fastapi import Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from fleet_server.web.i18n import table
from fleet_server.web.ui import page_lang

__all__ = ["REFUSED_REASON", "RETRY_AFTER_S", "DatabaseOutage", "is_unreachable"]

logger = logging.getLogger(__name__)

REFUSED_REASON: Final = "database_unavailable"
RETRY_AFTER_S: Final = 5
PROBLEM_TYPE: Final = "https://govedge.invalid/problems/database-unavailable"
_TITLE: Final = "Database unavailable"
_DETAIL: Final = "the fleet database cannot be reached; nothing was changed, try again shortly"
# SQLSTATE classes of a lost or refused connection: 08 (connection exception) and the
# server shutting down or starting up (57P01-57P03). A connection that never opened
# (the server is down) has no SQLSTATE at all.
_CONNECTION_STATES: Final = ("08", "57P01", "57P02", "57P03")


def is_unreachable(exc: OperationalError) -> bool:
    """Whether ``exc`` means the database cannot be reached (not a bad statement)."""
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:
        # psycopg: a failed connect; SQLite has no SQLSTATE and no server to lose.
        return type(exc.orig).__module__.startswith("psycopg")
    return str(sqlstate).startswith(_CONNECTION_STATES)


class DatabaseOutage:
    """Answers requests while the database is unreachable; logs an outage once."""

    def __init__(self, refused: Counter[str]) -> None:
        self._refused = refused
        self._lock = threading.Lock()
        self._down = False

    @property
    def down(self) -> bool:
        return self._down

    def watch(self, engine: Engine) -> None:
        """Call the outage over when ``engine`` opens a connection again."""
        event.listen(engine, "connect", self._connected)

    def _connected(self, _dbapi_connection: Any, _record: Any) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            logger.warning("database reachable again; requests are served")

    def _begin(self, exc: OperationalError) -> None:
        with self._lock:
            first, self._down = not self._down, True
            self._refused[REFUSED_REASON] += 1
        if first:
            # The driver's class only: its message names the server, the statement
            # and (without hide_parameters) its values.
            logger.warning(
                "database unreachable (%s); answering 503 until it returns",
                type(exc.orig).__name__,
            )

    async def handle(self, request: Request, exc: Exception) -> Response:
        """The exception handler for ``OperationalError``."""
        assert isinstance(exc, OperationalError)
        if not is_unreachable(exc):
            raise exc  # a real error: the server's 500, as before
        self._begin(exc)
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        if _is_page(request):
            return _page(request, headers)
        return JSONResponse(
            {
                "type": PROBLEM_TYPE,
                "title": _TITLE,
                "status": status.HTTP_503_SERVICE_UNAVAILABLE,
                "detail": _DETAIL,
            },
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers=headers,
            media_type="application/problem+json",
        )


def _is_page(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/ui") and not path.startswith(("/ui/data/", "/ui/static/"))


def _page(request: Request, headers: dict[str, str]) -> HTMLResponse:
    lang = page_lang(request, request.query_params.get("lang"))
    t = table(lang)
    # The same page again, with its query (the language asked for among it).
    again = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    html = f"""<!doctype html>
<html lang="{"zh-CN" if lang == "zh" else "en"}">
<head><meta charset="utf-8"><title>{escape(t["title"])}</title>
<link rel="stylesheet" href="/ui/static/app.css"></head>
<body><main class="outage" role="alert">
<h1>{escape(t["db_down_title"])}</h1>
<p>{escape(t["db_down_text"])}</p>
<p><a href="{escape(again)}">{escape(t["db_down_retry"])}</a></p>
</main></body></html>
"""
    return HTMLResponse(html, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)
