"""One strictness rule for transaction bodies, the same at the outlet and on the server.

The outlet (``edge_agent.transactions``) and the server (``fleet_server.transactions.
bodies``) each define the body shapes; these tests hold them to one rule: unknown fields
refused at every level, each material named once, a material ``ref`` of the same form,
queue events bounded by the same size.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from edge_agent import transactions as edge
from fleet_server.transactions import bodies as server
from fleet_server.transactions.bodies import BodyRejected, parse_body
from tests.server.txkit import ID_NUMBER, evaluation, submission


def _shape(model: type[Any]) -> Any:
    """The JSON schema without titles and descriptions: what each side accepts."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in {"title", "description"}}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(model.model_json_schema())


@pytest.mark.parametrize(
    ("outlet_side", "server_side"),
    [(edge.Submission, server.SubmissionBody), (edge.Evaluation, server.EvaluationBody)],
)
def test_outlet_and_server_accept_exactly_the_same_bodies(
    outlet_side: type[Any], server_side: type[Any]
) -> None:
    assert _shape(outlet_side) == _shape(server_side)
    assert _shape(outlet_side)["additionalProperties"] is False
    refs = _shape(server_side).get("$defs", {}).get("MaterialRef")
    if refs is not None:
        assert refs["properties"]["ref"]["pattern"] == "^[A-Za-z0-9_-]{8,48}$"
    assert (edge.QUEUE_EVENT_MAX_BYTES, edge.QUEUE_EVENT_MAX_KEYS) == (
        server.QUEUE_EVENT_MAX_BYTES,
        server.QUEUE_EVENT_MAX_KEYS,
    )


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
    assert _edge_refuses(edge.Submission, padded).fields
    with pytest.raises(BodyRejected):
        parse_body("evaluation", evaluation(1) | {"junk": 1})
    _edge_refuses(edge.Evaluation, evaluation(1) | {"junk": 1})


def test_a_material_named_twice_is_refused_on_both_sides() -> None:
    once = {"name": "户口簿", "ref": "mat-00000001"}
    twice = submission(materials=[once, once | {"name": "又一次"}])
    with pytest.raises(BodyRejected) as caught:
        parse_body("submission", twice)
    assert "materials" in caught.value.reason
    assert "more than once" in caught.value.reason
    assert _edge_refuses(edge.Submission, twice).fields == ("materials",)
    # The material ref has the outlet's form on both sides (it was 1-128 on the server).
    for ref in ("short", "x" * 49, "a/b/c/d/e/f"):
        body = submission(materials=[{"name": "户口簿", "ref": ref}])
        with pytest.raises(BodyRejected):
            parse_body("submission", body)
        _edge_refuses(edge.Submission, body)


def test_queue_events_are_bounded_the_same_on_both_sides() -> None:
    event = {"kind": "queue.issue", "ticket": "A001", "window": "3", "waiting": 2}
    assert isinstance(parse_body("queue.issue", event), server.QueueEventBody)
    assert edge._queue_entry(event | {"id": "e" * 32})[0] == "queue.issue"
    big = event | {"pad": "x" * server.QUEUE_EVENT_MAX_BYTES}
    assert len(json.dumps(big)) > server.QUEUE_EVENT_MAX_BYTES
    many = event | {f"k{i}": i for i in range(server.QUEUE_EVENT_MAX_KEYS)}
    for refused in (big, many):
        with pytest.raises(BodyRejected) as caught:
            parse_body("queue.issue", refused)
        assert caught.value.code == "oversize"
        with pytest.raises(edge.InvalidTransaction):
            edge._queue_entry(refused | {"id": "e" * 32})
