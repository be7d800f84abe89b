"""Hall screens' tokens (``display`` / ``kiosk`` roles) reach only what the screens need.

A kiosk stands in the public hall and a display's token sits in a browser: neither may
call a window, read a card or load appointments, and a display's event stream carries
queue events only, never a card read. The pages themselves are served without a token,
same-origin only by their Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from edge_agent.devices.id_card_reader.cards import make_card
from tests.local_api.harness import ORIGIN, outlet, wait_for_event


def test_display_and_kiosk_tokens_are_refused_outside_their_role(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o, asyncio.timeout(30):
            _, display = o.apps.add("hall-display", origins=[ORIGIN], role="display")
            _, kiosk = o.apps.add("hall-kiosk", origins=[ORIGIN], role="kiosk")
            as_display = {"Authorization": f"Bearer {display}"}
            as_kiosk = {"Authorization": f"Bearer {kiosk}"}

            assert (await o.client.get("/v1/queue", headers=as_display)).status_code == 200
            ticket = {"business_type": "social"}
            taken = await o.client.post("/v1/tickets", headers=as_kiosk, json=ticket)
            assert taken.status_code == 201
            before = (await o.client.get("/v1/queue", headers=o.auth)).json()

            refused = [
                ("POST", "/v1/tickets", as_display, ticket),
                ("POST", "/v1/appointments/check-in", as_display, {"reference": "YY-0001"}),
                ("POST", "/v1/windows/3/call", as_display, None),
                ("POST", "/v1/windows/3/call", as_kiosk, None),
                ("POST", "/v1/id-card/read", as_kiosk, {}),
                ("GET", "/v1/devices", as_kiosk, None),
                ("POST", "/v1/appointments", as_kiosk, {"appointments": []}),
            ]
            for method, path, headers, body in refused:
                response = await o.client.request(method, path, headers=headers, json=body)
                assert response.status_code == 403, (method, path, response.text)
                assert response.json()["error"] == "role_not_allowed"
                assert "--role" in response.json()["hint"]
            assert (await o.client.get("/v1/queue", headers=o.auth)).json() == before
            assert len(o.printer.tickets) == 1  # the kiosk's ticket only

    asyncio.run(main())


def test_display_event_stream_carries_queue_events_only(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o, asyncio.timeout(30):
            _, display = o.apps.add("hall-display", origins=[ORIGIN], role="display")
            async with o.events_socket(token=display) as screen, o.events_socket() as clerk:
                o.id_card.place_card(make_card())
                read = await o.client.post("/v1/id-card/read", headers=o.auth)
                assert read.status_code == 200
                await wait_for_event(clerk, "card.read")  # the clerk app sees it ...
                await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "social"})
                await o.client.post("/v1/windows/3/call", headers=o.auth)
                names = []
                while "window.result" not in names:
                    message = json.loads(await screen.recv())
                    if message["type"] == "event":
                        names.append(message["name"])
                assert names == ["ticket.issued", "window.result"]  # ... the display does not

    asyncio.run(main())


def test_hall_pages_are_served_without_a_token_and_same_origin_only(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o, asyncio.timeout(30):
            for page, title in (("display", "叫号大屏"), ("kiosk", "自助取号")):
                response = await o.client.get(f"/hall/{page}")
                assert response.status_code == 200
                assert f"<title>{title}</title>" in response.text
                assert 'lang="zh-CN"' in response.text
                policy = response.headers["content-security-policy"]
                assert "default-src 'none'" in policy
                assert "script-src 'self'" in policy
                assert "http" not in response.text.replace("http-equiv", "")  # no CDN
            script = await o.client.get("/hall/display.js")
            assert script.headers["content-type"].startswith("text/javascript")
            unknown = await o.client.get("/hall/secret.txt")
            assert unknown.status_code == 401  # not a page: the token rules apply

    asyncio.run(main())
