"""The 好差评 profile from the fleet config: one definition for the agent and the server.

The built-in profiles convert to the config's ``evaluation`` part and back; each outlet's
rules come from the ``evaluation`` part of its desired config (``outlet_configs``, written
here directly as the reconciler would) over the server's profile, on real SQLite and
PostgreSQL; and a real server process checks and stores evaluations under each outlet's
own rules.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.config.evaluation_rules import OutletEvaluationRules
from fleet_server.config.tables import OutletConfig
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.evaluations.rules import PROFILES, EvaluationRules, rules_for, with_config
from fleet_server.migrate import upgrade
from fleet_server.models import Evaluation, Rectification
from fleet_server.piivault import Vault, current_vault, use_vault
from fleet_server.settings import Settings
from fleet_server.transactions.bodies import parse_body
from fleet_server.transactions.inbox import PendingTx, store_transactions
from govedge_testbed import Mosquitto
from govedge_wire import Transaction, now_ms
from govedge_wire.config import DesiredConfig, EvaluationConfig, config_hash
from tests.server.helpers import FleetServer, poll
from tests.server.txkit import TxAgent, evaluation

ROOT = Path(__file__).resolve().parents[2]


def _zhejiang(**changes: Any) -> dict[str, Any]:
    """A desired config whose ``evaluation`` part is the Zhejiang profile, changed."""
    part = PROFILES["zhejiang"].to_config().model_copy(update=changes)
    config = DesiredConfig(log_level="INFO", evaluation=part)
    return config.model_dump(mode="json", exclude_none=True)


def _desire(sessions: sessionmaker[Session], outlet_id: str, config: dict[str, Any]) -> None:
    """Write the outlet's desired config as the reconciler does: a new version and hash."""
    with sessions.begin() as session:
        row = session.get(OutletConfig, outlet_id)
        if row is None:
            row = OutletConfig(outlet_id=outlet_id, desired_version=0)
            session.add(row)
        row.desired_version += 1
        row.desired = config
        row.desired_hash = config_hash(config)
        row.issued_at = datetime.now(UTC)


# -- the profiles and the wire shape agree ---------------------------------------------


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_converts_to_a_config_and_back(name: str) -> None:
    profile = PROFILES[name]
    document = {"evaluation": profile.to_config().model_dump(mode="json", exclude_none=True)}
    parsed = DesiredConfig.model_validate(json.loads(json.dumps(document)))
    assert parsed.evaluation is not None
    assert with_config(profile, parsed.evaluation) == profile
    # Copied onto a scope under a server running another profile, it is this profile.
    for base in PROFILES.values():
        assert replace(with_config(base, parsed.evaluation), name=name) == profile
    # Named by its coding and channels: the national ones are shared by four profiles.
    named = with_config(PROFILES["national"], parsed.evaluation).name
    assert named == ("zhejiang" if name == "zhejiang" else "national")


def test_the_settings_offer_exactly_the_built_in_profiles() -> None:
    offered = get_args(Settings.model_fields["evaluation_profile"].annotation)
    assert offered == tuple(PROFILES)


def test_the_zhejiang_document_in_the_docs_is_what_the_cli_prints() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "fleet_server", "evaluation-profile", "zhejiang"],
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    page = (ROOT / "docs" / "evaluations.md").read_text(encoding="utf-8")
    shown = re.search(r"Zhejiang's:\n\n```json\n(.*?)```", page, re.DOTALL)
    assert shown is not None
    assert json.loads(shown.group(1)) == json.loads(printed)
    config = DesiredConfig.model_validate(json.loads(printed)).evaluation
    assert config is not None
    assert with_config(PROFILES["national"], config) == PROFILES["zhejiang"]


def test_a_part_replaces_only_what_it_sets() -> None:
    national = rules_for("national")
    shorter = with_config(national, EvaluationConfig(rectification_days=3))
    assert (shorter.name, shorter.rectification_days) == ("national", 3)
    assert shorter.rectification_working_days
    assert shorter.level_coding == "gbt39046"
    reversed_only = with_config(national, EvaluationConfig(level_coding="zhejiang"))
    # Zhejiang's coding with the national channels is no built-in profile.
    assert reversed_only.name == "config"
    assert reversed_only.stars(1) == 1
    assert reversed_only.known_channel("7")


# -- each outlet's rules from its desired config, on SQLite and PostgreSQL --------------


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    before = current_vault()
    fresh = Vault(tmp_path / "keys")
    use_vault(fresh)
    yield fresh
    use_vault(before)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, vault: Vault
) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


class _Clock:
    """A monotonic clock the test moves, so "refresh is due" needs no waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _store(sessions: sessionmaker[Session], outlet_id: str, rules: EvaluationRules) -> str:
    """Store one 非常不满意/非常满意-by-coding evaluation (level code 1) under ``rules``."""
    body = evaluation(1)
    tx_id = f"evaluation-{outlet_id}"
    message = Transaction(
        outlet_id=outlet_id, session=1, seq=1, tx_id=tx_id, tx_kind="evaluation",
        created_ts=now_ms(), body=body,
    )  # fmt: skip
    pending = PendingTx(
        message=message,
        body=parse_body("evaluation", body),
        received_at=datetime(2026, 11, 6, 9, tzinfo=UTC),  # a Friday
        rules=rules,
    )
    with sessions.begin() as session:
        assert [s.outcome for s in store_transactions(session, [pending])] == ["accepted"]
    return tx_id


def test_outlet_rules_follow_the_desired_config(sessions: sessionmaker[Session]) -> None:
    _desire(sessions, "o-zj", _zhejiang(rectification_days=3))
    _desire(sessions, "o-quiet", {"log_level": "WARNING"})  # a config without the part
    _desire(sessions, "o-zj-2", _zhejiang(rectification_days=3))
    clock = _Clock()
    rules = OutletEvaluationRules(
        rules_for("national"), sessions=sessions, refresh_s=5.0, clock=clock
    )
    rules.load()
    assert rules("o-zj").name == "zhejiang"
    assert rules("o-zj").rectification_days == 3
    assert rules("o-zj") is rules("o-zj-2")  # equal parts share one rules object
    assert rules("o-quiet") is rules.base
    assert rules("o-unknown") is rules.base

    # Stored under each outlet's rules: the same level code, opposite meanings.
    _store(sessions, "o-zj", rules("o-zj"))
    _store(sessions, "o-quiet", rules("o-quiet"))
    with sessions() as session:
        evaluations = session.execute(select(Evaluation.outlet_id, Evaluation.stars))
        stars = {row.outlet_id: row.stars for row in evaluations}
        tickets = session.execute(select(Rectification.outlet_id, Rectification.deadline_at))
        deadlines = {row.outlet_id: row.deadline_at for row in tickets}
    assert stars == {"o-zj": 1, "o-quiet": 5}
    assert deadlines == {"o-zj": datetime(2026, 11, 9, 9, tzinfo=UTC)}  # 3 calendar days

    # A new desired config applies once the refresh is due, not before.
    _desire(sessions, "o-quiet", _zhejiang(rectification_working_days=True))
    _desire(sessions, "o-zj", {"log_level": "INFO"})
    assert rules("o-quiet") is rules.base
    clock.now += 5.0
    assert rules("o-quiet").name == "zhejiang"
    assert rules("o-quiet").rectification_working_days
    assert rules("o-zj") is rules.base
    # invalidate() makes the next call read again, due or not.
    _desire(sessions, "o-zj", _zhejiang())
    rules.invalidate()
    assert rules("o-zj") == PROFILES["zhejiang"]
    # What was stored keeps the stars it got.
    with sessions() as session:
        stored = select(Evaluation.stars).where(Evaluation.outlet_id == "o-quiet")
        assert session.scalar(stored) == 5


def test_bad_rows_and_a_failed_read_are_counted_and_change_nothing(
    sessions: sessionmaker[Session],
) -> None:
    _desire(sessions, "o-bad", {"evaluation": {"level_coding": "upside-down"}})
    _desire(sessions, "o-zj", _zhejiang())
    clock = _Clock()
    rules = OutletEvaluationRules(
        rules_for("national"), sessions=sessions, refresh_s=5.0, clock=clock
    )
    rules.load()
    assert rules("o-bad") is rules.base
    assert rules.errors() == {"refresh": 0, "invalid_config": 1}
    # The table gone: the re-read fails, and the rules read last stay in force.
    with sessions.begin() as session:
        session.execute(text("DROP TABLE outlet_configs"))
    clock.now += 5.0
    assert rules("o-zj") == PROFILES["zhejiang"]
    assert rules.errors() == {"refresh": 1, "invalid_config": 1}


# -- a real server process: ingest under each outlet's rules ---------------------------


def test_the_same_evaluation_is_accepted_for_one_outlet_and_refused_for_another(
    broker: Mosquitto, tmp_path: Path, outlet_id: str
) -> None:
    zj, national = f"{outlet_id}-zj", f"{outlet_id}-nat"
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    server = FleetServer(
        mqtt_url=broker.url, database_url=url, workdir=tmp_path,
        GOVEDGE_API_AUTH="off",  # security is tested in its own modules
        GOVEDGE_EVALUATION_RULES_REFRESH_S="0.2",
    )  # fmt: skip
    engine = make_engine(url)  # migrated by FleetServer (it makes an admin)
    sessions = make_sessionmaker(engine)
    _desire(sessions, zj, _zhejiang(rectification_days=3))
    server.start()
    agents = {outlet: TxAgent(broker.url, outlet, session=3) for outlet in (zj, national)}
    try:
        for agent in agents.values():
            agent.birth()
        assert server.get(f"/api/v1/evaluations/stats?outlet={zj}")["profile"] == "zhejiang"
        assert server.get(f"/api/v1/evaluations/stats?outlet={national}")["profile"] == "national"

        # level code 1 with 5 stars: 非常满意 nationally, a contradiction in Zhejiang.
        pleased = evaluation(1) | {"stars": 5}
        refused = agents[zj].ack(agents[zj].tx("evaluation", pleased))
        assert refused.status == "rejected"
        assert refused.reason == "level_code disagrees with stars under zhejiang coding"
        assert agents[national].ack(agents[national].tx("evaluation", pleased)).status == (
            "accepted"
        )
        # level code 1 with 1 star: the other way round, and a 差评 where accepted.
        angry = evaluation(1) | {"stars": 1}
        zj_bad = agents[zj].tx("evaluation", angry)
        assert agents[zj].ack(zj_bad).status == "accepted"
        assert agents[national].ack(agents[national].tx("evaluation", angry)).status == "rejected"
        national_bad = agents[national].tx("evaluation", evaluation(5) | {"stars": 1})
        assert agents[national].ack(national_bad).status == "accepted"

        # Rectification deadlines follow each outlet's rules.
        [zj_ticket] = server.get(f"/api/v1/rectifications?outlet={zj}")["items"]
        assert zj_ticket["tx_id"] == zj_bad
        opened = datetime.fromisoformat(zj_ticket["opened_at"])
        assert datetime.fromisoformat(zj_ticket["deadline_at"]) == opened + timedelta(days=3)
        [nat_ticket] = server.get(f"/api/v1/rectifications?outlet={national}")["items"]
        opened = datetime.fromisoformat(nat_ticket["opened_at"])
        expected = rules_for("national").deadline(opened)  # 15 working days
        assert datetime.fromisoformat(nat_ticket["deadline_at"]) == expected

        # The national outlet is moved to Zhejiang's profile while the server runs.
        _desire(sessions, national, _zhejiang(rectification_days=7))
        poll(
            lambda: (
                server.get(f"/api/v1/evaluations/stats?outlet={national}")["profile"] == "zhejiang"
            ),
            what="the new profile in force",
        )
        assert agents[national].ack(agents[national].tx("evaluation", angry)).status == ("accepted")
        tickets = server.get(f"/api/v1/rectifications?outlet={national}")["items"]
        by_tx = {ticket["tx_id"]: ticket for ticket in tickets}
        assert len(by_tx) == 2
        # The earlier ticket keeps the stars and the deadline it was stored with.
        assert by_tx[national_bad]["stars"] == 1
        assert by_tx[national_bad]["deadline_at"] == nat_ticket["deadline_at"]
        [new] = [ticket for tx_id, ticket in by_tx.items() if tx_id != national_bad]
        opened = datetime.fromisoformat(new["opened_at"])
        assert datetime.fromisoformat(new["deadline_at"]) == opened + timedelta(days=7)
        metrics = server.http.get("/metrics").text
        assert 'govedge_evaluation_rules_errors_total{kind="invalid_config"} 0.0' in metrics
    finally:
        for agent in agents.values():
            agent.close()
        engine.dispose()
        assert server.stop() == 0, server.stderr()
