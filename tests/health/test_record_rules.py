"""The alert rules read from the server's records (``fleet_server.alerts.record_rules``):
dead letters, overdue 差评 rectifications, a week's low active evaluation rate,
expiring certificates, an upstream target's open breaker. Records the test makes in
real SQLite and PostgreSQL; the engine's own evaluation with an explicit ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.rules import DEFAULT_RULES
from fleet_server.health.tables import Alert, AlertRuleOverride
from fleet_server.models import DeadLetter, Rectification
from fleet_server.routing.breaker import CircuitBreaker
from fleet_server.routing.store import replay_dead_letter
from tests.health import records

NOW = datetime(2026, 12, 9, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def sessions(db_sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The database on SQLite and on PostgreSQL (tests/conftest.py)."""
    return db_sessions


def _open(sessions: sessionmaker[Session]) -> dict[tuple[str, str, str], Alert]:
    with sessions() as session:
        return {
            (a.rule, a.outlet_id, a.device_id): a
            for a in session.scalars(select(Alert).where(Alert.state == "open"))
        }


def _seed(session: Session) -> None:
    for outlet_id in ("dl", "late", "quiet", "busy", "few", "cert-soon", "cert-renewed",
                      "cert-revoked"):  # fmt: skip
        records.outlet(session, outlet_id, kind="township_centre", region="410522100",
                       at=NOW - 60 * DAY)  # fmt: skip
    records.dead_letter(session, "dl", at=NOW - DAY)
    records.dead_letter(session, "dl", at=NOW - 2 * DAY)
    records.ticket(session, "late", opened=NOW - 20 * DAY, days=15)  # due 5 days ago
    records.ticket(session, "late", opened=NOW - 2 * DAY, days=15)  # not yet due
    # 30 cases in the week; 10 citizens rated, 10 ratings are the system's defaults.
    records.cases(session, "quiet", 30, at=NOW - 2 * DAY)
    records.evaluations(session, "quiet", [5] * 10, at=NOW - 2 * DAY)
    records.evaluations(session, "quiet", [5] * 10, at=NOW - 2 * DAY, default=True)
    # Busy rated well: 20 of 30.
    records.cases(session, "busy", 30, at=NOW - 2 * DAY)
    records.evaluations(session, "busy", [4] * 20, at=NOW - 2 * DAY)
    # Before the week: what "quiet" did then does not count.
    records.evaluations(session, "quiet", [5] * 50, at=NOW - 10 * DAY)
    # Too few cases to judge.
    records.cases(session, "few", 5, at=NOW - DAY)
    records.certificate(session, "cert-soon", not_after=NOW + 10 * DAY)
    records.certificate(session, "cert-renewed", not_after=NOW + 5 * DAY)
    records.certificate(session, "cert-renewed", not_after=NOW + 300 * DAY)
    records.certificate(session, "cert-revoked", not_after=NOW + 3 * DAY, revoked=NOW - DAY)


def test_the_rules_have_defaults() -> None:
    assert DEFAULT_RULES["dead_letters"] == {"enabled": True, "min_count": 1,
                                             "severity": "warning"}  # fmt: skip
    assert DEFAULT_RULES["evaluation_rate_low"]["min_rate"] == 0.6
    assert DEFAULT_RULES["evaluation_rate_low"]["days"] == 7
    assert DEFAULT_RULES["certificate_expiring"]["within_days"] == 14
    assert DEFAULT_RULES["upstream_breaker_open"]["severity"] == "critical"
    assert DEFAULT_RULES["rectification_overdue"]["enabled"] is True


def test_each_rule_opens_on_its_records_and_resolves_when_handled(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _seed(session)
    dead_target = CircuitBreaker(threshold=2, cooldown_s=3600)
    live_target = CircuitBreaker(threshold=2, cooldown_s=3600)
    dead_target.failure()
    dead_target.failure()  # two failures in a row: open
    engine = AlertEngine(sessions=sessions, interval_s=60)
    engine.watch_breakers(lambda: {"zhoushan": dead_target.state, "taizhou": live_target.state})
    engine.evaluate_once(now=NOW)
    alerts = _open(sessions)
    assert set(alerts) == {
        ("dead_letters", "dl", ""),
        ("rectification_overdue", "late", ""),
        ("evaluation_rate_low", "quiet", ""),
        ("certificate_expiring", "cert-soon", ""),
        ("upstream_breaker_open", "_fleet", "target:zhoushan"),
    }
    assert alerts["dead_letters", "dl", ""].value == 2
    late = alerts["rectification_overdue", "late", ""]
    assert (late.value, len(late.detail["tickets"])) == (1, 1)
    quiet = alerts["evaluation_rate_low", "quiet", ""]
    assert quiet.value == round(10 / 30, 4)
    assert (quiet.detail["cases"], quiet.detail["active_evaluations"]) == (30, 10)
    assert alerts["certificate_expiring", "cert-soon", ""].value == 10.0
    breaker = alerts["upstream_breaker_open", "_fleet", "target:zhoushan"]
    assert (breaker.severity, breaker.detail["state"]) == ("critical", "open")

    # The operators act: dead letters replayed, the ticket closed, a certificate
    # renewed, the target answers again.
    with sessions.begin() as session:
        for dead in session.scalars(select(DeadLetter)):
            replay_dead_letter(session, dead, now=NOW)
        for ticket in session.scalars(
            select(Rectification).where(Rectification.outlet_id == "late")
        ):
            ticket.status, ticket.closed_at = "closed", NOW
        records.certificate(session, "cert-soon", not_after=NOW + 365 * DAY)
    dead_target.success()
    engine.evaluate_once(now=NOW + timedelta(minutes=1))
    assert set(_open(sessions)) == {("evaluation_rate_low", "quiet", "")}


def test_overrides_tune_and_switch_off_each_rule(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _seed(session)
        session.add_all([
            # The county accepts a lower rate; one outlet's dead letters alert from 3 on.
            AlertRuleOverride(scope="region", scope_value="410522", rule="evaluation_rate_low",
                              params={"min_rate": 0.3}),
            AlertRuleOverride(scope="outlet", scope_value="dl", rule="dead_letters",
                              params={"min_count": 3}),
            AlertRuleOverride(scope="kind", scope_value="township_centre",
                              rule="certificate_expiring", params={"within_days": 5}),
            AlertRuleOverride(scope="global", scope_value="", rule="rectification_overdue",
                              params={"enabled": False}),
        ])  # fmt: skip
    AlertEngine(sessions=sessions, interval_s=60).evaluate_once(now=NOW)
    assert set(_open(sessions)) == set()
