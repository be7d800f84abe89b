"""Transaction bodies: one definition (``govedge_wire.transactions``) at both ends.

The outlet (``edge_agent.transactions``) validates before its outbox takes a body, the
server (``fleet_server.transactions.bodies``) on ingest; these tests hold both to the
one rule: unknown fields refused at every level, each material named once, every limit
drawn at the same place, queue events bounded by the same size.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from edge_agent import transactions as edge
from fleet_server.transactions.bodies import BodyRejected, parse_body
from govedge_wire import transactions as wire
from tests.server.txkit import ID_NUMBER, evaluation, submission


def _both_accept(tx_kind: str, body: dict[str, Any]) -> None:
    model = wire.SubmissionBody if tx_kind == "submission" else wire.EvaluationBody
    edge._validate(model, body, what=tx_kind)
    assert type(parse_body(tx_kind, body)) is model


def test_outlet_and_server_validate_with_the_one_wire_definition() -> None:
    # The outlet files with the wire models, the server parses into them: one class each.
    assert edge.SubmissionBody is wire.SubmissionBody
    assert edge.EvaluationBody is wire.EvaluationBody
    assert type(parse_body("submission", submission())) is wire.SubmissionBody
    assert type(parse_body("evaluation", evaluation(1))) is wire.EvaluationBody
    schema = wire.SubmissionBody.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["MaterialRef"]["properties"]["ref"]["pattern"] == (
        "^[A-Za-z0-9_-]{8,48}$"
    )


@pytest.mark.parametrize(
    ("tx_kind", "at_limit", "past_limit"),
    [
        ("submission", {"note": "x" * 2000}, {"note": "x" * 2001}),
        ("submission", {"window": "w" * 64}, {"window": "w" * 65}),
        ("submission", {"item_code": "c" * 64}, {"item_code": "c" * 65}),
        ("submission", {"region_code": "1" * 12}, {"region_code": "1" * 13}),
        (
            "submission",
            {"materials": [{"name": "n", "ref": f"mat-{i:08d}"} for i in range(200)]},
            {"materials": [{"name": "n", "ref": f"mat-{i:08d}"} for i in range(201)]},
        ),
        (
            "submission",
            {"materials": [{"name": "n" * 200, "ref": "r" * 48, "pages": 10_000}]},
            {"materials": [{"name": "n", "ref": "r" * 49}]},
        ),
        ("evaluation", {"text": "x" * 2000}, {"text": "x" * 2001}),
        (
            "evaluation",
            {"tags": [f"t{i}" for i in range(32)]},
            {"tags": [f"t{i}" for i in range(33)]},
        ),
        (
            "evaluation",
            {"evaluated_ts": 253_402_300_799_999},
            {"evaluated_ts": 253_402_300_800_000},
        ),
    ],
)
def test_both_sides_draw_each_limit_at_the_same_place(
    tx_kind: str, at_limit: dict[str, Any], past_limit: dict[str, Any]
) -> None:
    base = submission() if tx_kind == "submission" else evaluation(1)
    model = wire.SubmissionBody if tx_kind == "submission" else wire.EvaluationBody
    _both_accept(tx_kind, base | at_limit)
    with pytest.raises(BodyRejected):
        parse_body(tx_kind, base | past_limit)
    _edge_refuses(model, base | past_limit)


def _edge_refuses(model: type[Any], body: dict[str, Any]) -> edge.InvalidTransaction:
    with pytest.raises(edge.InvalidTransaction) as caught:
        edge._validate(model, body, what="body")
    return caught.value


@pytest.mark.parametrize(
    "padded",
    [
        submission(junk="x" * 1000),
        submission(applicant={"name": "张三丰", "id_number": ID_NUMBER, "photo": "x" * 1000}),
        submission(materials=[{"name": "户口簿", "ref": "mat-00000001", "data": "x" * 1000}]),
    ],
)
def test_unknown_fields_are_refused_on_both_sides_naming_them_not_their_values(
    padded: dict[str, Any],
) -> None:
    with pytest.raises(BodyRejected) as caught:
        parse_body("submission", padded)
    assert caught.value.code == "unknown_fields"
    assert "unknown fields refused" in caught.value.reason
    assert "xxxx" not in caught.value.reason
    assert ID_NUMBER not in caught.value.reason
    assert _edge_refuses(wire.SubmissionBody, padded).fields
    with pytest.raises(BodyRejected):
        parse_body("evaluation", evaluation(1) | {"junk": 1})
    _edge_refuses(wire.EvaluationBody, evaluation(1) | {"junk": 1})


def test_a_material_named_twice_is_refused_on_both_sides() -> None:
    once = {"name": "户口簿", "ref": "mat-00000001"}
    twice = submission(materials=[once, once | {"name": "又一次"}])
    with pytest.raises(BodyRejected) as caught:
        parse_body("submission", twice)
    assert "materials" in caught.value.reason
    assert "more than once" in caught.value.reason
    assert _edge_refuses(wire.SubmissionBody, twice).fields == ("materials",)
    # The material ref has the outlet's form on both sides (it was 1-128 on the server).
    for ref in ("short", "x" * 49, "a/b/c/d/e/f"):
        body = submission(materials=[{"name": "户口簿", "ref": ref}])
        with pytest.raises(BodyRejected):
            parse_body("submission", body)
        _edge_refuses(wire.SubmissionBody, body)


def test_queue_events_are_bounded_the_same_on_both_sides() -> None:
    event = {"kind": "queue.issue", "ticket": "A001", "window": "3", "waiting": 2}
    assert isinstance(parse_body("queue.issue", event), wire.QueueEventBody)
    assert edge._queue_entry(event | {"id": "e" * 32})[0] == "queue.issue"
    big = event | {"pad": "x" * wire.QUEUE_EVENT_MAX_BYTES}
    assert len(json.dumps(big)) > wire.QUEUE_EVENT_MAX_BYTES
    many = event | {f"k{i}": i for i in range(wire.QUEUE_EVENT_MAX_KEYS)}
    for refused in (big, many):
        with pytest.raises(BodyRejected) as caught:
            parse_body("queue.issue", refused)
        assert caught.value.code == "oversize"
        with pytest.raises(edge.InvalidTransaction):
            edge._queue_entry(refused | {"id": "e" * 32})
