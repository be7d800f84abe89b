"""The JavaScript client: served without a token, and in step with the agent's OpenAPI.

The client's ``ROUTES`` table (path + method per function) must cover every local-API
route with methods the class defines, and each interface in the ``.d.ts`` named after a
schema must match it field by field (``client_drift.py``), so a field added, removed,
retyped or made optional in the agent without the client fails here; the check itself
is shown to fail on drifted copies of the document and the files.
"""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path
from typing import Any

import pytest

from tests.local_api.client_drift import drift, interfaces
from tests.local_api.harness import ORIGIN, Outlet, outlet

CLIENT_DIR = Path(__file__).parents[2] / "edge_agent" / "local_api" / "client"
DTS = (CLIENT_DIR / "govedge-local.d.ts").read_text(encoding="utf-8")
JS = (CLIENT_DIR / "govedge-local.js").read_text(encoding="utf-8")


def run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            async with asyncio.timeout(30):
                await scenario(o)

    asyncio.run(main())


def test_client_is_served_without_a_token_with_an_etag(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        js = await o.client.get("/client/govedge-local.js", headers={"Origin": ORIGIN})
        assert js.status_code == 200
        assert js.headers["content-type"].startswith("text/javascript")
        assert js.headers["access-control-allow-origin"] == "*"
        assert js.content == (CLIENT_DIR / "govedge-local.js").read_bytes()
        again = await o.client.get(
            "/client/govedge-local.js", headers={"If-None-Match": js.headers["etag"]}
        )
        assert again.status_code == 304
        types = await o.client.get("/client/govedge-local.d.ts")
        assert types.status_code == 200
        assert b"class GovedgeLocal" in types.content
        # Only these two files are public: the rest still needs the token.
        assert (await o.client.get("/client/other.js")).status_code == 401

    run(tmp_path, scenario)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The agent's OpenAPI document, as a running outlet serves it."""
    found: dict[str, Any] = {}

    async def scenario(o: Outlet) -> None:
        found.update((await o.client.get("/openapi.json", headers=o.auth)).json())

    run(tmp_path_factory.mktemp("openapi"), scenario)
    return found


def test_client_matches_the_openapi_document(spec: dict[str, Any]) -> None:
    assert drift(spec, DTS, JS) == []
    mirrored = set(interfaces(DTS)) & set(spec["components"]["schemas"])
    assert len(mirrored) >= 30  # the check compared the interfaces, not nothing


def _schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = spec["components"]["schemas"][name]
    return found


def _replace(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _drifted_spec(spec: dict[str, Any], change: str) -> dict[str, Any]:
    drifted = copy.deepcopy(spec)
    ticket = _schema(drifted, "TicketPublic")
    if change == "retyped":
        ticket["properties"]["waiting"] = {"type": "string"}
    elif change == "not_nullable":
        ticket["properties"]["tx_id"] = {"type": "string"}
    elif change == "now_nullable":
        ticket["properties"]["number"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    elif change == "new_field":
        ticket["properties"]["counter"] = {"type": "integer"}
    elif change == "field_removed":
        del ticket["properties"]["evaluation_url"]
    elif change == "now_required":
        ticket["required"].append("priority")
    elif change == "now_optional":
        ticket["required"].remove("printed")
    elif change == "enum_grew":
        status = _schema(drifted, "TransactionPublic")["properties"]["status"]
        status["enum"].append("expired")
    elif change == "array_items":
        _schema(drifted, "WindowPublic")["properties"]["business_types"]["items"] = {
            "type": "integer"
        }
    elif change == "other_ref":
        _schema(drifted, "QueueStatePublic")["properties"]["windows"]["items"] = {
            "$ref": "#/components/schemas/TicketInfo"
        }
    elif change == "record_values":
        health = _schema(drifted, "DevicePublic")["properties"]["health"]
        health["additionalProperties"] = {"type": "string"}
    elif change == "schema_renamed":
        schemas = drifted["components"]["schemas"]
        schemas["LedState"] = schemas.pop("LedPublic")
        led = _schema(drifted, "WindowResultPublic")["properties"]["led"]
        led["anyOf"][0]["$ref"] = "#/components/schemas/LedState"
    elif change == "new_route":
        drifted["paths"]["/v1/windows/{window}/close"] = {"post": {"responses": {}}}
    else:
        raise AssertionError(change)
    return drifted


SPEC_DRIFT = {
    "retyped": "TicketPublic.waiting is number in the .d.ts, string in the schema",
    "not_nullable": "TicketPublic.tx_id is string | null in the .d.ts, string in the schema",
    "now_nullable": "TicketPublic.number is string in the .d.ts, null | string in the schema",
    "new_field": "TicketPublic.counter is in the schema, not in the .d.ts",
    "field_removed": "TicketPublic.evaluation_url is in the .d.ts, no longer in the schema",
    "now_required": "TicketPublic.priority must be required",
    "now_optional": "TicketPublic.printed must be optional (?)",
    "enum_grew": "TransactionPublic.status is",
    "array_items": "WindowPublic.business_types is string[] in the .d.ts, (number)[]",
    "other_ref": "QueueStatePublic.windows is WindowPublic[] in the .d.ts, (TicketInfo)[]",
    "record_values": "DevicePublic.health is Record<string, number | boolean | string>",
    "schema_renamed": "the .d.ts has interface LedPublic, which is no schema of the agent",
    "new_route": "ROUTES lacks POST /v1/windows/{window}/close",
}


@pytest.mark.parametrize("change", sorted(SPEC_DRIFT))
def test_the_drift_check_fails_when_the_agent_changes(spec: dict[str, Any], change: str) -> None:
    problems = drift(_drifted_spec(spec, change), DTS, JS)
    assert any(p.startswith(SPEC_DRIFT[change]) for p in problems), problems


CLIENT_DRIFT = {
    # (file, old, new) -> the problem reported
    "a method lost in the .js": (
        "js",
        "  windowHold(window) {",
        "  windowHalt(window) {",
        "ROUTES names windowHold, which class GovedgeLocal does not define",
    ),
    "a route name the class lacks": (
        "js",
        '["windowSkip", "POST"',
        '["windowSkipTicket", "POST"',
        "ROUTES names windowSkipTicket, which class GovedgeLocal does not define",
    ),
    "a method undeclared in the .d.ts": (
        "dts",
        "  queueState(): Promise<QueueStatePublic>;\n",
        "",
        "ROUTES names queueState, which the .d.ts does not declare",
    ),
    "a field made optional in the .d.ts": (
        "dts",
        "device_id: string; card_number: string;",
        "device_id?: string; card_number: string;",
        "SocialSecurityCardPublic.device_id must be required",
    ),
    "nullable dropped in the .d.ts": (
        "dts",
        "current_ticket: string | null;",
        "current_ticket: string;",
        "WindowPublic.current_ticket is string in the .d.ts, null | string in the schema",
    ),
    "a literal changed in the .d.ts": (
        "dts",
        'status?: "accepted";',
        'status?: "queued";',
        "SubmissionAccepted.status is",
    ),
    "a field the schema never had": (
        "dts",
        "export interface LedPublic { lines: string[]; shown: boolean }",
        "export interface LedPublic { lines: string[]; shown: boolean; colour: string }",
        "LedPublic.colour is in the .d.ts, no longer in the schema",
    ),
    "a type the check cannot read": (
        "dts",
        "export interface LedPublic { lines: string[]; shown: boolean }",
        "export interface LedPublic { lines: Array<string>; shown: boolean }",
        "LedPublic.lines: a TypeScript type the drift check cannot read",
    ),
}


@pytest.mark.parametrize("change", sorted(CLIENT_DRIFT))
def test_the_drift_check_fails_when_the_client_changes(spec: dict[str, Any], change: str) -> None:
    where, old, new, problem = CLIENT_DRIFT[change]
    dts = _replace(DTS, old, new) if where == "dts" else DTS
    js = _replace(JS, old, new) if where == "js" else JS
    problems = drift(spec, dts, js)
    assert any(p.startswith(problem) for p in problems), problems


def _signatures() -> dict[str, tuple[list[tuple[str, str]], str]]:
    """Each ``GovedgeLocal`` method of the ``.d.ts``: its (parameter, type) list and the
    type its promise resolves to."""
    text = (CLIENT_DIR / "govedge-local.d.ts").read_text(encoding="utf-8")
    body = text.split("export declare class GovedgeLocal {", 1)[1]
    found: dict[str, tuple[list[tuple[str, str]], str]] = {}
    for name, params, result in re.findall(r"^  (\w+)\((.*?)\): Promise<(\w+)>;", body, re.M):
        pairs = [p.split(":", 1) for p in params.split(", ") if p]
        found[name] = ([(n.strip().rstrip("?"), t.strip()) for n, t in pairs], result)
    return found


def _schema_name(content: dict[str, Any]) -> str:
    """The schema a JSON body refers to (an optional body is ``anyOf [ref, null]``)."""
    schema = content.get("application/json", {}).get("schema", {})
    refs = re.findall(r"#/components/schemas/(\w+)", str(schema))
    return refs[0] if len(refs) == 1 else ""


def test_each_call_is_typed_as_its_openapi_operation(tmp_path: Path) -> None:
    """Path parameters first, then ``body`` typed with the request schema exactly when the
    operation takes a body, and the promise of the success response's schema."""

    async def scenario(o: Outlet) -> None:
        spec = (await o.client.get("/openapi.json", headers=o.auth)).json()
        signatures = _signatures()
        source = (CLIENT_DIR / "govedge-local.js").read_text(encoding="utf-8")
        table = source.split("export const ROUTES = [", 1)[1].split("];", 1)[0]
        checked = 0
        for name, method, path in re.findall(r'\["(\w+)", "(GET|POST)", "([^"]+)"\]', table):
            if name not in signatures:  # announcementUrl: a URL, not a call
                continue
            params, result = signatures[name]
            operation = spec["paths"][path][method.lower()]
            path_params = re.findall(r"\{(\w+)\}", path)
            assert len(params) >= len(path_params), name
            assert all(t == "string" for _, t in params[: len(path_params)]), name
            rest = dict(params[len(path_params) :])
            request = operation.get("requestBody")
            if request is None:
                assert "body" not in rest, f"{name} declares a body its operation has not"
            else:
                assert rest.get("body") == _schema_name(request["content"]), name
            success = next(v for k, v in operation["responses"].items() if k.startswith("2"))
            assert result == _schema_name(success.get("content", {})), name
            checked += 1
        assert checked == len(signatures)

    run(tmp_path, scenario)
