"""``GET /api/v1/outlets`` a page at a time: limit/offset, total, search, sort, limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleet_server.models import Agent, Outlet
from fleet_server.security import Role
from tests.security.api_harness import Api, running_api

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("outlets"), mqtt_url="mqtt://127.0.0.1:1") as api:
        with api.session() as session, session.begin():
            for n in range(25):
                outlet_id = f"o-{n:03d}"
                # Names run the other way round from ids, so sorting by name is visible.
                session.add(Outlet(id=outlet_id, display_name=f"Hall {24 - n:02d}", created_at=NOW))
                if n % 5 == 4:
                    continue  # no agent yet: state "unknown", never seen
                session.add(
                    Agent(
                        outlet_id=outlet_id, state="online" if n % 2 else "offline",
                        state_since=NOW, last_seen=NOW - timedelta(minutes=n), devices=[],
                    )
                )  # fmt: skip
            session.add(Outlet(id="x_1%", display_name="Odd id", created_at=NOW))
        yield api


def get(api: Api, query: str = "") -> Any:
    response = api.client.get(f"/api/v1/outlets{query}", headers=api.as_role(Role.VIEWER))
    assert response.status_code == 200, response.text
    return response.json()


def ids(page: dict[str, Any]) -> list[str]:
    return [item["outlet_id"] for item in page["items"]]


def test_default_page_holds_every_outlet_of_a_small_fleet_with_the_total(api: Api) -> None:
    page = get(api)
    assert (page["total"], page["limit"], page["offset"]) == (26, 100, 0)
    assert ids(page) == [f"o-{n:03d}" for n in range(25)] + ["x_1%"]


def test_pages_walk_the_list_without_gaps_or_repeats(api: Api) -> None:
    walked: list[str] = []
    for offset in range(0, 30, 7):
        page = get(api, f"?limit=7&offset={offset}")
        assert page["total"] == 26
        walked += ids(page)
    assert walked == ids(get(api))
    assert get(api, "?offset=500")["items"] == []


def test_state_filter_counts_only_matching_outlets(api: Api) -> None:
    online = get(api, "?state=online&limit=3")
    assert online["total"] == sum(1 for n in range(25) if n % 5 != 4 and n % 2)
    assert all(item["state"] == "online" for item in online["items"])
    unknown = get(api, "?state=unknown")
    assert ids(unknown) == [f"o-{n:03d}" for n in range(4, 25, 5)] + ["x_1%"]


def test_search_is_an_id_or_name_prefix_with_wildcards_taken_literally(api: Api) -> None:
    assert ids(get(api, "?q=o-01")) == [f"o-{n:03d}" for n in range(10, 20)]
    assert ids(get(api, "?q=Hall%2000")) == ["o-024"]
    assert ids(get(api, "?q=x_1%25")) == ["x_1%"]
    assert get(api, "?q=%25")["total"] == 0  # "%" is a character here, not "anything"
    assert get(api, "?q=o_0")["total"] == 0


def test_sort_by_name_state_and_last_seen(api: Api) -> None:
    by_name = ids(get(api, "?sort=name&limit=3"))
    assert by_name == ["o-024", "o-023", "o-022"]
    desc = ids(get(api, "?sort=name&order=desc&limit=1"))
    assert desc == ["x_1%"]  # "Odd id" after every "Hall"
    states = [item["state"] for item in get(api, "?sort=state")["items"]]
    assert states == sorted(states)
    seen = get(api, "?sort=last_seen&order=desc")["items"]
    stamps = [item["last_seen"] for item in seen if item["last_seen"] is not None]
    assert stamps == sorted(stamps, reverse=True)
    assert seen[0]["outlet_id"] == "o-000"  # seen most recently
    assert all(item["last_seen"] is None for item in seen[len(stamps) :])  # never seen last


@pytest.mark.parametrize(
    "query", ["?limit=0", "?limit=1001", "?limit=ten", "?offset=-1", "?sort=secret", "?order=up"]
)
def test_bad_paging_is_a_422_naming_the_field(api: Api, query: str) -> None:
    response = api.client.get(f"/api/v1/outlets{query}", headers=api.as_role(Role.VIEWER))
    assert response.status_code == 422
    field = query[1:].split("=")[0]
    assert field in response.text


def test_largest_page_is_allowed(api: Api) -> None:
    assert get(api, "?limit=1000")["total"] == 26
