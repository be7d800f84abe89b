"""``GET /api/v1/rectifications`` a page at a time: limit/offset, total, filters, limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleet_server.models import Evaluation, Rectification
from fleet_server.security import Role
from govedge_wire.pii import make_id_number
from tests.security.api_harness import Api, running_api

NOW = datetime.now(UTC)
OUTLETS = ("o-1", "o-2")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """12 tickets: o-1 holds the even ones, o-2 the odd; every third is closed, and the
    first two open ones are past their deadline."""
    with running_api(tmp_path_factory.mktemp("rect"), mqtt_url="mqtt://127.0.0.1:1") as api:
        with api.session() as session, session.begin():
            for n in range(12):
                outlet_id = OUTLETS[n % 2]
                evaluation = Evaluation(
                    tx_id=f"ev-{n}", outlet_id=outlet_id, window="W1", case_number=f"C{n:03d}",
                    level_code=5, stars=1, channel="4", is_bad=True, is_default=False,
                    real_name=True, evaluated_at=NOW,
                )  # fmt: skip
                session.add(evaluation)
                session.flush()
                closed = n % 3 == 0
                session.add(
                    Rectification(
                        evaluation_id=evaluation.id, outlet_id=outlet_id, window="W1",
                        opened_at=NOW - timedelta(days=20),
                        deadline_at=NOW + timedelta(days=-1 if n in (1, 2) else 15),
                        status="closed" if closed else "open",
                        closed_at=NOW if closed else None,
                    )
                )  # fmt: skip
        yield api


def get(api: Api, query: str = "") -> Any:
    response = api.client.get(f"/api/v1/rectifications{query}", headers=api.as_role(Role.VIEWER))
    assert response.status_code == 200, response.text
    return response.json()


def cases(page: dict[str, Any]) -> list[str]:
    return [item["case_number"] for item in page["items"]]


def test_the_default_page_holds_a_small_list_newest_first_with_the_total(api: Api) -> None:
    page = get(api)
    assert (page["total"], page["limit"], page["offset"]) == (12, 50, 0)
    assert cases(page) == [f"C{n:03d}" for n in reversed(range(12))]


def test_pages_walk_the_list_without_gaps_or_repeats(api: Api) -> None:
    walked: list[str] = []
    for offset in range(0, 12, 5):
        page = get(api, f"?limit=5&offset={offset}")
        assert (page["total"], page["limit"], page["offset"]) == (12, 5, offset)
        walked += cases(page)
    assert walked == cases(get(api))
    assert get(api, "?offset=500") == {"items": [], "total": 12, "limit": 50, "offset": 500}


def test_the_filters_count_only_matching_tickets(api: Api) -> None:
    closed = get(api, "?status=closed&limit=2")
    assert closed["total"] == 4
    assert cases(closed) == ["C009", "C006"]
    assert all(item["status"] == "closed" for item in closed["items"])
    overdue = get(api, "?overdue=true")
    assert (overdue["total"], cases(overdue)) == (2, ["C002", "C001"])
    mine = get(api, "?outlet=o-2&status=open&limit=1&offset=1")
    assert mine["total"] == 4  # o-2's open tickets: 1, 5, 7, 11
    assert cases(mine) == ["C007"]


@pytest.mark.parametrize(
    "query", ["?limit=0", "?limit=501", "?limit=ten", "?offset=-1", "?offset=10000001"]
)
def test_bad_paging_is_a_422_naming_the_field(api: Api, query: str) -> None:
    response = api.client.get(f"/api/v1/rectifications{query}", headers=api.as_role(Role.VIEWER))
    assert response.status_code == 422
    field = query[1:].split("=")[0]
    assert field in response.text
    assert get(api)["total"] == 12  # nothing changed


def test_the_largest_page_is_allowed(api: Api) -> None:
    assert len(get(api, "?limit=500")["items"]) == 12


def test_a_refused_follow_up_does_not_echo_the_note_it_carried(api: Api) -> None:
    """A follow-up note names the citizen (it is sealed at rest); one over the length
    limit is refused without the note in the answer, which FastAPI would otherwise
    send back whole as the rejected ``input``."""
    opened = get(api, "?status=open&limit=1")["items"][0]
    before = opened["follow_ups"]
    citizen = f"回访张三丰 {make_id_number('330106', '19900101', 123)} "
    body = {"action": "回访", "note": citizen * 200, "by": "王科长"}
    response = api.client.post(
        f"/api/v1/rectifications/{opened['id']}/follow-up",
        headers=api.as_role(Role.OPERATOR),
        json=body,
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "note"]
    assert "4000" in problem["msg"]
    assert "张三丰" not in response.text
    assert "330106" not in response.text
    after = get(api, "?status=open&limit=1")["items"][0]
    assert (after["id"], after["follow_ups"]) == (opened["id"], before)
