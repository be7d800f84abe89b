"""系统默认评价: a default rating for a case the citizen did not rate on the pad.

When the pad times out and the region's 好差评 profile (the fleet config's
``evaluation`` part) has ``default_stars`` and a default channel, the default waits in
the local API's state database (``default_ratings``) for ``default_after_s``; then it
goes into the outbox as an ``evaluation`` with ``system_default`` and is forgotten.
A rating the citizen gives for the same case and assess number meanwhile (the clerk
asks again) drops it. The agent makes it, not the server, because only the agent
knows the pad asked and nobody answered, and an outlet offline for days still records
it on time and delivers it later (docs/evaluations.md, "Default ratings").

Exactly once across restarts: the waiting default is on disk before the clerk's call
returns; its ``tx_id`` comes from the pad request, so an outbox put repeated after a
crash (before the row was deleted) is the same transaction, which the outbox and the
server each keep once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.devices.evaluation_pad.models import EvaluationOutcome
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.models.evaluations import DefaultRatingPublic
from edge_agent.local_api.state import LocalStateError
from edge_agent.outbox import OutboxError
from edge_agent.transactions import InvalidTransaction, record_default_evaluation
from govedge_wire.config import EvaluationConfig

__all__ = [
    "DefaultRule",
    "ScheduledDefault",
    "cancel_default",
    "default_rule",
    "record_due",
    "run_default_ratings",
    "schedule_default",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DefaultRule:
    """What a default rating is in this region."""

    stars: int
    level_code: int
    channel: str
    after_s: float


def default_rule(config: EvaluationConfig | None) -> DefaultRule | None:
    """The region's default rating, or None when its profile records none."""
    if config is None or config.default_stars is None or not config.default_channels:
        return None
    stars = config.default_stars
    # Zhejiang codes 5 = 非常满意; GB/T 39046 (everyone else) 1 = 非常满意.
    level_code = stars if config.level_coding == "zhejiang" else 6 - stars
    return DefaultRule(
        stars=stars,
        level_code=level_code,
        channel=config.default_channels[0],
        after_s=float(config.default_after_s or 0),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledDefault:
    """The default rating a walk-away was given: recorded already, or due at ``due``."""

    tx_id: str
    stars: int
    due: float  # epoch seconds
    recorded: bool

    def public(self) -> DefaultRatingPublic:
        """As the evaluation answer and the keypad's ``evaluation.result`` event say it."""
        return DefaultRatingPublic(
            state="recorded" if self.recorded else "pending",
            tx_id=self.tx_id,
            stars=self.stars,
            due_at=datetime.fromtimestamp(self.due, UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
        )


def default_tx_id(request_id: str) -> str:
    """The default rating's ``tx_id``: one per pad request, whoever records it."""
    return f"default-{request_id}"[:64]


async def schedule_default(
    local: LocalApiContext, outcome: EvaluationOutcome, *, now: float | None = None
) -> ScheduledDefault | None:
    """Keep the default rating of a timed-out request; what was kept, or None if none."""
    live = local.runtime.live
    rule = default_rule(None if live is None else live.evaluation)
    if rule is None:
        return None
    request = outcome.request
    due = (time.time() if now is None else now) + rule.after_s
    record: dict[str, Any] = {
        "level_code": rule.level_code,
        "stars": rule.stars,
        "channel": rule.channel,
        "window": request.window,
        "case_number": request.case_no or None,
        "evaluated_ts": int(due * 1000),
        "assess_number": request.assess_number,
        "item_code": request.item_code or None,
        "clerk": request.staff_id or None,
    }
    tx_id = default_tx_id(request.request_id)
    try:
        await local.state.add_default(
            tx_id,
            case_number=request.case_no or None,
            assess_number=request.assess_number,
            due=due,
            body=json.dumps(record, ensure_ascii=False),
        )
    except LocalStateError as exc:
        # The walk-away itself is still answered; the default is what is lost, loudly.
        log.error("default evaluation %s not kept: %s", tx_id, exc)  # noqa: TRY400
        return None
    log.info("default evaluation %s due in %.0f s (window %s)", tx_id, rule.after_s, request.window)
    recorded = False
    if rule.after_s == 0:
        try:
            recorded = tx_id in await record_due(local)
        except LocalStateError as exc:  # kept on disk: the loop records it
            log.warning("default evaluation %s waits for the next round: %s", tx_id, exc)
    return ScheduledDefault(tx_id=tx_id, stars=rule.stars, due=due, recorded=recorded)


async def cancel_default(local: LocalApiContext, *, case_number: str, assess_number: int) -> None:
    """Drop a waiting default of a case the citizen has now rated (theirs is recorded)."""
    try:
        dropped = await local.state.drop_defaults(case=(case_number, assess_number))
    except LocalStateError as exc:
        log.warning("a waiting default evaluation may still be recorded: %s", exc)
        return
    if dropped:
        log.info("%d default evaluation(s) dropped: the citizen rated", dropped)


async def record_due(local: LocalApiContext, *, now: float | None = None) -> list[str]:
    """Put every default rating that is due into the outbox; the ``tx_id``s that went in."""
    recorded: list[str] = []
    for tx_id, body in await local.state.due_defaults(time.time() if now is None else now):
        try:
            await record_default_evaluation(local.runtime, json.loads(body), tx_id=tx_id)
        except InvalidTransaction as exc:
            # Not recordable (cannot happen for a row this module wrote): drop, say so.
            log.error("default evaluation %s dropped: %s", tx_id, exc)  # noqa: TRY400
        except OutboxError as exc:
            log.warning("default evaluation %s waits: %s", tx_id, exc)
            break  # the outbox is full or closed: the next round tries again
        await local.state.drop_defaults(tx_id=tx_id)
        await local.tracker.accepted(tx_id, tx_kind="evaluation")
        recorded.append(tx_id)
    return recorded


async def run_default_ratings(local: LocalApiContext) -> None:
    """Record default ratings as they fall due, until cancelled."""
    while True:
        try:
            await record_due(local)
            due = await local.state.next_default_due()
        except LocalStateError as exc:
            log.warning("default evaluations not checked: %s", exc)
            due = None
        wait = local.options.default_ratings_check_s
        if due is not None:
            wait = min(wait, max(due - time.time(), 0.0) + 0.01)
        await asyncio.sleep(wait)
