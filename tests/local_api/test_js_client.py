"""The JavaScript client: served without a token, and in step with the agent's OpenAPI.

The client's ``ROUTES`` table (path + method per function) must cover every local-API
route, and each interface in the ``.d.ts`` named after a schema must declare that
schema's properties, so a field added to the agent without the client fails here.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from tests.local_api.harness import ORIGIN, Outlet, outlet

CLIENT_DIR = Path(__file__).parents[2] / "edge_agent" / "local_api" / "client"


def run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            async with asyncio.timeout(30):
                await scenario(o)

    asyncio.run(main())


def _client_routes() -> set[tuple[str, str]]:
    source = (CLIENT_DIR / "govedge-local.js").read_text(encoding="utf-8")
    table = source.split("export const ROUTES = [", 1)[1].split("];", 1)[0]
    return {(m, p) for _, m, p in re.findall(r'\["(\w+)", "(GET|POST)", "([^"]+)"\]', table)}


def _interfaces() -> dict[str, set[str]]:
    text = (CLIENT_DIR / "govedge-local.d.ts").read_text(encoding="utf-8")
    found: dict[str, set[str]] = {}
    for name, body in re.findall(r"export interface (\w+) \{(.*?)\}\n", text, flags=re.S):
        found[name] = set(re.findall(r"(\w+)\??:", body))
    return found


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


def test_client_matches_the_openapi_document(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        spec = (await o.client.get("/openapi.json", headers=o.auth)).json()
        api_routes = {
            (method.upper(), path)
            for path, item in spec["paths"].items()
            if path.startswith("/v1/")
            for method in item
        }
        assert _client_routes() == api_routes
        interfaces = _interfaces()
        checked = 0
        for name, schema in spec["components"]["schemas"].items():
            if name not in interfaces:
                continue
            missing = set(schema.get("properties", {})) - interfaces[name]
            assert not missing, f"{name} in the .d.ts lacks {sorted(missing)}"
            checked += 1
        for item in spec["paths"].values():
            for op in item.values():
                for ref in re.findall(r"#/components/schemas/(\w+)", str(op)):
                    if ref not in ("HTTPValidationError", "ErrorBody", "ValidationError"):
                        assert ref in interfaces, f"the .d.ts has no interface {ref}"
        assert checked >= 20

    run(tmp_path, scenario)


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
