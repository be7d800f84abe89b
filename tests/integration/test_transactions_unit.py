"""``edge_agent.transactions`` and the uplink PII guard, against a real outbox on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.devices import DeviceEvent
from edge_agent.devices.evaluation_pad.models import (
    EvaluationOutcome,
    EvaluationRequest,
    EvaluationResult,
    OutcomeStatus,
)
from edge_agent.discovery import ControlledSource, DeviceManager
from edge_agent.outbox import Outbox
from edge_agent.profiles import ProfileSet
from edge_agent.queueing import BusinessType, QueueEngine
from edge_agent.runtime import AgentRuntime
from edge_agent.transactions import (
    InvalidTransaction,
    file_submission,
    record_evaluation,
    record_queue_event,
)
from edge_agent.uplink.events import PiiGuard, to_wire_event

SUBMISSION = {
    "item_code": "330100-0001-01",
    "region_code": "330902",
    "applicant": {"name": "测试人", "id_number": "330102199001011234"},
    "window": "3",
    "clerk": "clerk-07",
}


def _outcome(status: OutcomeStatus = OutcomeStatus.RATED) -> EvaluationOutcome:
    request = EvaluationRequest(request_id="r" * 32, window="3", case_no="CASE-001", staff_id="c7")
    result = EvaluationResult(
        stars=5,
        level_code=1,
        level_coding="gbt39046",
        satisfaction="非常满意",
        score=100,
        is_bad=False,
        tags=("态度好",),
        assess_time="2024-05-06 10:11:12",
    )
    rated = status is OutcomeStatus.RATED
    return EvaluationOutcome(request=request, status=status, result=result if rated else None)


def _run(tmp_path: Path, scenario: object) -> None:
    async def main() -> None:
        async with (
            Outbox(tmp_path / "o.db", key_path=tmp_path / "o.key", quota_bytes=2**24) as outbox,
            QueueEngine(tmp_path, [BusinessType(code="g", prefix="A", name="综合")]) as queue,
        ):
            devices = DeviceManager(ProfileSet(), ControlledSource())
            runtime = AgentRuntime(outlet_id="o1", devices=devices, outbox=outbox, queue=queue)
            assert callable(scenario)
            await scenario(runtime)

    asyncio.run(main())


def test_each_helper_stores_the_right_kind_once(tmp_path: Path) -> None:
    async def scenario(runtime: AgentRuntime) -> None:
        sub = await file_submission(runtime, SUBMISSION, tx_id="clerk-retry-0001")
        assert await file_submission(runtime, SUBMISSION, tx_id="clerk-retry-0001") == sub
        ev = await record_evaluation(runtime, _outcome())
        assert await record_evaluation(runtime, _outcome()) == ev  # same pad request
        issued = await runtime.queue.issue("g")
        queue_tx = await record_queue_event(runtime, issued.event)
        assert queue_tx == issued.event["id"]
        batch = await runtime.outbox.next_batch(10)
        assert [(e.tx_id, e.meta.tx_kind) for e in batch] == [
            (sub, "submission"),
            (ev, "evaluation"),
            (queue_tx, "queue.issue"),
        ]
        evaluation = batch[1].body
        assert evaluation["level_code"] == 1
        assert evaluation["channel"] == "4"
        assert evaluation["case_number"] == "CASE-001"
        assert evaluation["evaluated_ts"] == 1714961472000  # 10:11:12 in Asia/Shanghai
        assert isinstance(batch[0].body["accepted_ts"], int)

    _run(tmp_path, scenario)


def test_bad_bodies_are_refused_naming_fields_not_values(tmp_path: Path) -> None:
    async def scenario(runtime: AgentRuntime) -> None:
        bad = dict(SUBMISSION, region_code="hangzhou")
        bad["applicant"] = {"name": "测试人"}
        with pytest.raises(InvalidTransaction) as caught:
            await file_submission(runtime, bad)
        assert set(caught.value.fields) == {"region_code", "applicant.id_number"}
        assert "测试人" not in str(caught.value)
        assert "hangzhou" not in str(caught.value)
        with pytest.raises(InvalidTransaction):
            await record_evaluation(runtime, _outcome(OutcomeStatus.TIMED_OUT))
        with pytest.raises(InvalidTransaction):
            await record_queue_event(runtime, {"id": "x" * 32, "kind": "submission"})
        assert await runtime.outbox.next_batch(10) == []

    _run(tmp_path, scenario)


def test_pii_guard_drops_personal_keys_at_any_depth() -> None:
    guard = PiiGuard()
    event = DeviceEvent(
        device_id="reader-1",
        name="card.read",
        data={
            "name": "张*",
            "id_number": "3301**********1234",
            "card_type": "resident",
            "address": "/dev/ttyUSB0",
            "nested": {"photo": b"jpeg", "ok": 1, "holderName": "x"},
            "when": object(),
        },
    )
    wire = to_wire_event(event, outlet_id="o1", session=1, seq=3, guard=guard)
    assert wire.data["card_type"] == "resident"
    assert wire.data["nested"] == {"ok": 1}
    assert set(wire.data) == {"card_type", "nested", "when"}
    assert isinstance(wire.data["when"], str)
    assert guard.dropped == 5
