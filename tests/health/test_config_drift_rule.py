"""The ``config_drift`` rule on one outlet's facts (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet_server.alerts.conditions import OutletFacts, conditions_for
from fleet_server.alerts.rules import RuleBook

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
RULES = RuleBook([]).for_outlet(outlet_id="o1", region_code=None, kind=None)


def _drift(**fields: object) -> list[str]:
    facts = OutletFacts(outlet_id="o1", **fields)  # type: ignore[arg-type]
    found = conditions_for(facts, RULES, now=NOW, local_now=NOW, already_open=set())
    return [c.rule for c in found if c.rule == "config_drift"]


def test_drift_counts_only_while_online() -> None:
    long_ago = NOW - timedelta(hours=5)
    # Out of sync for hours, but it came online a minute ago: not yet.
    assert _drift(state="online", state_since=NOW - timedelta(minutes=1),
                  config_drifting_since=long_ago) == []  # fmt: skip
    assert _drift(state="online", state_since=long_ago, config_drifting_since=long_ago) == [
        "config_drift"
    ]
    # Offline: outlet_offline speaks for it.
    assert _drift(state="offline", state_since=long_ago, config_drifting_since=long_ago) == []


def test_a_refusal_alerts_at_once() -> None:
    assert _drift(state="online", state_since=NOW, config_drifting_since=NOW,
                  config_refused="bad_signature") == ["config_drift"]  # fmt: skip
