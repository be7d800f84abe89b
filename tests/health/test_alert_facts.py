"""The alert engine reads only devices some rule may fire for (a SQL pre-filter); it must
open exactly the alerts that evaluating every device in full would open.

Real SQLite and real PostgreSQL; the reference is ``conditions_for`` applied to every
device row read back whole, without the filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from fleet_server.alerts.conditions import OutletFacts, conditions_for
from fleet_server.alerts.engine import AlertEngine, load_rulebook
from fleet_server.alerts.rules import Override
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.tables import Alert, AlertRuleOverride, DeviceState
from fleet_server.migrate import upgrade
from fleet_server.models import Agent, Outlet

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, a weekday
LONG_AGO = NOW - timedelta(hours=2)

# (device_id, state, reads_ok, reads_failed, health)
DEVICES: list[tuple[str, str, int, int, dict[str, Any]]] = [
    ("healthy", "ready", 120, 1, {"connected": True, "firmware": "1.0"}),
    ("gone", "offline", 0, 0, {}),
    ("broken", "error", 5, 0, {}),
    ("failing", "ready", 70, 30, {}),  # 30 % > 20 %
    ("at-limit", "ready", 80, 20, {}),  # exactly 20 %: not above
    ("few-reads", "ready", 5, 5, {}),  # 50 %, but under min_reads 20 by default
    ("printer-end", "ready", 0, 0, {"paper": "end"}),
    ("printer-low", "ready", 0, 0, {"paper": "near_end"}),
    ("printer-ok", "ready", 0, 0, {"paper": "ok"}),
    ("odd-paper", "ready", 0, 0, {"paper": 3}),
]


def _fill(url: str) -> Any:
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        for outlet in ("f-1", "f-2"):
            session.add(Outlet(id=outlet, display_name=None, created_at=LONG_AGO))
            session.add(
                Agent(outlet_id=outlet, state="online", state_since=LONG_AGO, session=1,
                      last_seq=0, last_seen=NOW, devices=[], last_metrics={})
            )  # fmt: skip
            for device_id, state, ok, failed, health in DEVICES:
                session.add(
                    DeviceState(outlet_id=outlet, device_id=device_id, kind="x", model=None,
                                firmware=None, state=state, state_since=LONG_AGO,
                                last_seen=NOW, health=health, error_count=0,
                                reads_ok=ok, reads_failed=failed)
                )  # fmt: skip
        # One outlet counts "few-reads" (10 reads) already, with a lower ratio too.
        session.add(
            AlertRuleOverride(scope="outlet", scope_value="f-2", rule="read_failure_rate",
                              params={"min_reads": 5, "max_ratio": 0.1})
        )  # fmt: skip
    return engine


def _reference(engine: Any) -> set[tuple[str, str, str]]:
    """Every rule over every device, read whole (no filter)."""
    keys: set[tuple[str, str, str]] = set()
    with make_sessionmaker(engine)() as session:
        book = load_rulebook(session)
        rows = list(session.scalars(select(DeviceState)))
        for outlet in ("f-1", "f-2"):
            facts = OutletFacts(
                outlet_id=outlet, state="online", state_since=LONG_AGO,
                devices=[
                    {"device_id": r.device_id, "kind": r.kind, "state": r.state,
                     "state_since": r.state_since, "health": r.health,
                     "reads_ok": r.reads_ok, "reads_failed": r.reads_failed}
                    for r in rows if r.outlet_id == outlet
                ],
            )  # fmt: skip
            rules = book.for_outlet(outlet_id=outlet, region_code=None, kind=None)
            for condition in conditions_for(
                facts, rules, now=NOW, local_now=NOW, already_open=set()
            ):
                keys.add(condition.key)
    return keys


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_filtered_facts_open_the_same_alerts_as_reading_every_device(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'fleet.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = _fill(url)
    try:
        expected = _reference(engine)
        # The reference itself is what the rules say (so the comparison means something).
        assert ("device_offline", "f-1", "gone") in expected
        assert ("read_failure_rate", "f-1", "failing") in expected
        assert ("read_failure_rate", "f-1", "at-limit") not in expected
        assert ("read_failure_rate", "f-2", "at-limit") in expected
        assert ("read_failure_rate", "f-2", "few-reads") in expected
        assert ("printer_paper", "f-1", "printer-low") in expected
        AlertEngine(sessions=make_sessionmaker(engine), interval_s=60).evaluate_once(now=NOW)
        with make_sessionmaker(engine)() as session:
            opened = {
                (a.rule, a.outlet_id, a.device_id)
                for a in session.scalars(select(Alert).where(Alert.state == "open"))
            }
        assert opened == expected
    finally:
        engine.dispose()


def test_loosest_read_thresholds_cover_every_scope() -> None:
    from fleet_server.alerts.rules import RuleBook

    book = RuleBook(
        [
            Override(scope="kind", scope_value="kiosk", rule="read_failure_rate",
                     params={"min_reads": "3"}),
            Override(scope="outlet", scope_value="o", rule="read_failure_rate",
                     params={"max_ratio": 0.05}),
        ]
    )  # fmt: skip
    assert book.loosest_read_thresholds() == (3, 0.05)
    assert RuleBook([]).loosest_read_thresholds() == (20, 0.2)


def test_each_outlet_gets_exactly_its_own_layers_of_overrides() -> None:
    from fleet_server.alerts.rules import DEFAULT_RULES, RuleBook

    book = RuleBook(
        [
            Override(scope="region", scope_value="3309", rule="outlet_offline",
                     params={"after_s": 120}),
            Override(scope="kind", scope_value="kiosk_24h", rule="outlet_offline",
                     params={"severity": "warning"}),
            Override(scope="outlet", scope_value="o-2", rule="outlet_offline",
                     params={"after_s": 60}),
        ]
    )  # fmt: skip

    def offline(outlet_id: str, region: str | None, kind: str | None) -> dict[str, Any]:
        params: dict[str, Any] = book.for_outlet(
            outlet_id=outlet_id, region_code=region, kind=kind
        )["outlet_offline"]
        return params

    plain = DEFAULT_RULES["outlet_offline"]
    # Asked in an order where a wrongly shared answer would leak between outlets.
    assert offline("o-1", "330902104", None) == {**plain, "after_s": 120}
    assert offline("o-2", "330902104", None) == {**plain, "after_s": 60}
    assert offline("o-3", "330902104", None) == {**plain, "after_s": 120}
    assert offline("o-4", "330102001", "kiosk_24h") == {**plain, "severity": "warning"}
    assert offline("o-5", "330102001", None) == plain
    assert offline("o-2", None, None) == {**plain, "after_s": 60}
    assert offline("o-6", None, None) == plain
    assert DEFAULT_RULES["outlet_offline"] == plain == {
        "enabled": True, "after_s": 600, "severity": "critical",
    }  # fmt: skip
