"""The operators' day-to-day pages (docs/fleet-health.md, "Operators' pages"):
``/ui/alerts`` (open alerts, history, ack/silence, the rule overrides),
``/ui/dead-letters`` (replay), ``/ui/transactions`` and ``/ui/rectifications``
(好差评 follow-ups). Each is the usual HTML shell; ``static/ops.js`` reads the APIs,
which apply the caller's region scope, and refetches on every ``change`` event.
"""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from fleet_server.alerts.rules import DEFAULT_RULES, SEVERITIES
from fleet_server.api.auth import Authenticated
from fleet_server.evaluations.rectifications import FollowUpAction
from fleet_server.security import Principal, Role
from fleet_server.web.ui import PAGE_DEPENDENCIES, page_lang, render_page

router = APIRouter(
    prefix="/ui", tags=["web ui"], include_in_schema=False, dependencies=PAGE_DEPENDENCIES
)
# Ack, silence, rule overrides, replays and follow-ups: the APIs' write routes need an
# operator (docs/security.md).
ACTOR = Role.OPERATOR
# 回访, 整改, 反馈, 解释说明: what the follow-up form offers, as the API accepts them.
ACTIONS = list(get_args(FollowUpAction))


def _page(
    request: Request,
    principal: Principal,
    page: str,
    lang: str | None,
    extra: dict[str, Any] | None = None,
) -> HTMLResponse:
    # A viewer gets no action buttons rather than ones that could only answer 403.
    data: dict[str, Any] = (extra or {}) | {
        "can_act": principal.role.allows(ACTOR),
        # A scoped user's prefixes: the rule form offers only overrides inside them.
        "prefixes": list(principal.scope.prefixes),
        "whole_fleet": principal.scope.whole_fleet,
    }
    return render_page(request, principal, page=page, lang=page_lang(request, lang), data=data)


@router.get("/alerts")
def alerts_page(
    request: Request, principal: Authenticated, lang: str | None = None
) -> HTMLResponse:
    """Open alerts and history with filters; ack and silence (with a reason); the rule
    overrides that reach the user's outlets, with the edit form for operators."""
    # The rule form is built from the defaults: one field per parameter, of its kind.
    extra = {"rules": DEFAULT_RULES, "severities": list(SEVERITIES)}
    return _page(request, principal, "alerts", lang, extra)


@router.get("/dead-letters")
def dead_letters_page(
    request: Request, principal: Authenticated, lang: str | None = None
) -> HTMLResponse:
    """Dead letters, a page at a time; one's detail (applicant masked); replay."""
    return _page(request, principal, "dead-letters", lang)


@router.get("/transactions")
def transactions_page(
    request: Request, principal: Authenticated, lang: str | None = None
) -> HTMLResponse:
    """Transactions by state, outlet and time, a page at a time; one's attempts."""
    return _page(request, principal, "transactions", lang)


@router.get("/rectifications")
def rectifications_page(
    request: Request, principal: Authenticated, lang: str | None = None
) -> HTMLResponse:
    """差评 rectifications, open and overdue; the follow-up form for operators."""
    return _page(request, principal, "rectifications", lang, {"actions": ACTIONS})
