"""The gate: token, origin, CORS, Host header (DNS rebinding), loopback-only binding."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.counters import AgentCounters
from edge_agent.local_api import LocalApiOptions, serve_local_api
from tests.local_api.harness import FOREIGN, ORIGIN, Outlet, outlet
from tests.rawhttp import RESET, endless_chunked


def run(tmp_path: Path, scenario: object) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            async with asyncio.timeout(30):
                await scenario(o)  # type: ignore[operator]

    asyncio.run(main())


def test_missing_or_wrong_token_is_401_and_counted(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        missing = await o.client.get("/v1/devices")
        assert missing.status_code == 401
        assert missing.json()["error"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await o.client.get("/v1/devices", headers={"Authorization": "Bearer gva_nope"})
        assert wrong.status_code == 401
        docs = await o.client.get("/openapi.json")
        assert docs.status_code == 401
        ok = await o.client.get("/v1/devices", headers=o.auth)
        assert ok.status_code == 200
        kinds = {d["kind"] for d in ok.json()["devices"]}
        assert {"id_card_reader", "evaluation_pad", "ticket_printer", "led_screen"} <= kinds
        one = await o.client.get("/v1/devices/printer-1", headers=o.auth)
        assert one.json()["state"] == "ready"
        assert "paper" in one.json()["health"]

    run(tmp_path, scenario)


def test_foreign_origin_is_403_without_cors_headers(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        response = await o.client.post("/v1/id-card/read", headers={**o.auth, "Origin": FOREIGN})
        assert response.status_code == 403
        assert response.json()["error"] == "origin_not_allowed"
        assert not any(h.startswith("access-control-") for h in response.headers)
        preflight = await o.client.options(
            "/v1/id-card/read",
            headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 403
        assert not any(h.startswith("access-control-") for h in preflight.headers)
        # Chromium's Private Network Access question from a foreign page: no.
        private = await o.client.options(
            "/v1/id-card/read",
            headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Private-Network": "true"},
        )  # fmt: skip
        assert private.status_code == 403
        assert "access-control-allow-private-network" not in private.headers
        # Even a token-less request from a foreign page gets no CORS header to read with.
        anonymous = await o.client.get("/v1/devices", headers={"Origin": FOREIGN})
        assert anonymous.status_code == 401
        assert "access-control-allow-origin" not in anonymous.headers

    run(tmp_path, scenario)


def test_allowed_origin_works_with_cors(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        preflight = await o.client.options(
            "/v1/id-card/read",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        assert "access-control-allow-private-network" not in preflight.headers  # not asked
        # A registered app's page on an intranet origin asks Chromium's Private Network
        # Access question before calling 127.0.0.1: yes.
        private = await o.client.options(
            "/v1/id-card/read",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Private-Network": "true"},
        )  # fmt: skip
        assert private.status_code == 204
        assert private.headers["access-control-allow-private-network"] == "true"
        assert private.headers["access-control-allow-origin"] == ORIGIN
        response = await o.client.get("/v1/queue", headers={**o.auth, "Origin": ORIGIN})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["vary"] == "Origin"

    run(tmp_path, scenario)


def test_host_header_must_be_loopback(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        for host in ("evil.example", "evil.example:8765", "192.168.1.20:8765"):
            response = await o.client.get("/v1/devices", headers={**o.auth, "Host": host})
            assert response.status_code == 403, host
            assert response.json()["error"] == "host_not_allowed"
        for host in ("localhost", f"localhost:{o.port}", f"127.0.0.1:{o.port}"):
            response = await o.client.get("/v1/devices", headers={**o.auth, "Host": host})
            assert response.status_code == 200, host

    run(tmp_path, scenario)


def test_openapi_documents_every_operation_with_examples(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        spec = (await o.client.get("/openapi.json", headers=o.auth)).json()
        paths = spec["paths"]
        for path in (
            "/v1/devices",
            "/v1/devices/{device_id}",
            "/v1/id-card/read",
            "/v1/social-security/read",
            "/v1/documents/capture",
            "/v1/evaluations",
            "/v1/tickets",
            "/v1/queue",
            "/v1/windows/{window}/call",
            "/v1/windows/{window}/call-back",
            "/v1/submissions",
            "/v1/transactions/{tx_id}",
            "/v1/announcements/{announcement_id}.wav",
        ):
            assert path in paths, path
            for operation in paths[path].values():
                assert operation.get("description") or operation.get("summary")
                assert "401" in operation["responses"]
                assert operation["security"] == [{"HTTPBearer": []}]
        schemas = spec["components"]["schemas"]
        for name in ("IdCardPublic", "SubmissionCreate", "EvaluationCreate", "TicketPublic"):
            assert schemas[name].get("examples"), name

    run(tmp_path, scenario)


def test_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
            await serve_local_api(None, port=0, apps=None, host="0.0.0.0")  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_body_over_the_limit_is_refused_chunked_included(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Content-Length over the limit: 413 unread. No Content-Length (chunked, endless):
    cut off with 413 as soon as it crosses the limit; the API answers on."""

    async def main() -> None:
        async with outlet(tmp_path, options=LocalApiOptions(max_body_bytes=64 * 1024)) as o:
            declared = await o.client.post(
                "/v1/submissions", headers=o.auth, content=b"{" + b" " * 70_000 + b"}"
            )
            assert declared.status_code == 413
            assert declared.json()["error"] == "request_too_large"
            headers = {**o.auth, "Idempotency-Key": "case-endless-1"}
            answer = await asyncio.to_thread(
                endless_chunked, o.port, "/v1/submissions", headers=headers
            )
            assert answer.startswith(b"HTTP/1.1 413 ") or answer == RESET, answer[:200]
            if answer != RESET:
                assert b"request_too_large" in answer
            assert "too_large, streamed" in caplog.text
            assert (await o.client.get("/v1/devices", headers=o.auth)).status_code == 200

    asyncio.run(main())


def test_refusals_reach_the_agents_telemetry_counters(tmp_path: Path) -> None:
    """A refused or invalid request is counted where every telemetry message reads it."""
    counters = AgentCounters()

    async def scenario(o: Outlet) -> None:
        assert (await o.client.get("/v1/devices")).status_code == 401
        bad = {**o.auth, "Origin": "https://other.example"}
        assert (await o.client.get("/v1/devices", headers=bad)).status_code == 403
        invalid = await o.client.post("/v1/submissions", headers=o.auth, json={"nope": 1})
        assert invalid.status_code == 422

    async def main() -> None:
        async with outlet(tmp_path, counters=counters) as o:
            await scenario(o)

    asyncio.run(main())
    reported = counters.subset()  # what the uplink puts in each telemetry message
    assert reported["local_api_refused_missing_token"] == 1
    assert reported["local_api_refused_bad_origin"] == 1
    assert reported["local_api_refused_invalid_request"] == 1
    assert reported["local_api_refused_bad_token"] == 0  # reported before it ever happens
