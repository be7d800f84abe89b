"""``local_api.routing``: FastAPI-style declarations served by Starlette alone.

What a clerk app sees must be what FastAPI gave before the agent dropped it: the same
constraints checked, the same error list in the same ``{error, message, hint}`` answer,
the same JSON. Served in-process through the real Starlette app and the agent's error
handlers; the whole local API runs through it in every other test of this folder.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Annotated, Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from edge_agent.local_api.errors import ApiError, install_error_handlers
from edge_agent.local_api.openapi_route import OpenApiDocument
from edge_agent.local_api.routing import (
    APIRouter,
    Body,
    Depends,
    Header,
    Path,
    Query,
    starlette_routes,
)
from edge_agent.local_api_openapi import build_document


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=8)
    count: int = 1


class Answer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    case_id: str = Field(serialization_alias="caseId")
    count: int


# Module level, as in the agent: annotations are read with the module's globals.
router = APIRouter(prefix="/t")


def who(connection: HTTPConnection) -> str:
    return str(connection.headers.get("x-clerk", "nobody"))


@router.post("/cases/{case_id}", response_model=Answer, status_code=201)
async def file_case(
    case_id: Annotated[str, Path(pattern=r"^[a-z]{2,4}$")],
    case: Case,
    key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=8)] = None,
) -> Answer:
    return Answer(case_id=case_id, count=case.count)


@router.get("/echo")
async def echo(
    clerk: Annotated[str, Depends(who)],
    limit: Annotated[int, Query(ge=1, le=5)] = 2,
    out: Annotated[str, Query(alias="format")] = "json",
) -> dict[str, Any]:
    return {"clerk": clerk, "limit": limit, "format": out}


@router.post("/optional")
async def optional(body: Annotated[Case | None, Body()] = None) -> dict[str, Any]:
    return {"title": None if body is None else body.title}


@router.get("/answer-from-dict", response_model=Answer)
async def from_dict() -> Any:
    return {"case_id": "ab", "count": 3, "ignored": True}


@router.get("/sync")
def in_a_thread() -> dict[str, bool]:
    return {"event_loop_thread": threading.current_thread() is threading.main_thread()}


def _app() -> Starlette:
    app = Starlette(routes=starlette_routes(router))
    install_error_handlers(app)
    return app


async def _call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.request(method, url, **kwargs)


def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return asyncio.run(_call(method, url, **kwargs))


def test_a_valid_request_is_answered_with_the_models_json() -> None:
    response = call(
        "POST",
        "/t/cases/abc",
        json={"title": "户籍", "count": 4},
        headers={"Idempotency-Key": "key-0001"},
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"caseId": "abc", "count": 4}  # by alias, as FastAPI


def test_each_source_is_checked_and_every_problem_named() -> None:
    response = call(
        "POST",
        "/t/cases/TOOLONG",
        json={"title": "", "extra": 1},
        headers={"Idempotency-Key": "short"},
    )
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == "invalid_request"
    where = [tuple(d["loc"]) for d in answer["details"]]
    assert where == [
        ("path", "case_id"),
        ("header", "idempotency-key"),
        ("body", "title"),
        ("body", "extra"),
    ]
    assert answer["message"].startswith("case_id: String should match pattern")


def test_the_rejected_input_is_never_repeated() -> None:
    secret = "110101199003077777"
    response = call("POST", "/t/cases/ab", json={"title": secret})
    assert response.status_code == 422
    assert secret not in response.text


def test_a_body_that_is_not_json_says_so() -> None:
    broken = call(
        "POST", "/t/cases/ab", content=b'{"title": ', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["details"][0]["msg"] == "JSON decode error"
    as_text = call("POST", "/t/cases/ab", content=b'{"title": "a"}')  # no Content-Type
    assert as_text.status_code == 422
    assert "Content-Type: application/json" in as_text.json()["hint"]
    missing = call("POST", "/t/cases/ab")
    assert missing.status_code == 422
    assert missing.json()["details"] == [{"loc": ["body"], "msg": "Field required"}]


def test_query_parameters_defaults_aliases_and_dependencies() -> None:
    plain = call("GET", "/t/echo")
    assert plain.json() == {"clerk": "nobody", "limit": 2, "format": "json"}
    given = call("GET", "/t/echo?limit=5&format=jpeg", headers={"X-Clerk": "wang"})
    assert given.json() == {"clerk": "wang", "limit": 5, "format": "jpeg"}
    over = call("GET", "/t/echo?limit=9")
    assert over.status_code == 422
    assert over.json()["details"][0]["loc"] == ["query", "limit"]


def test_an_optional_body_may_be_absent() -> None:
    assert call("POST", "/t/optional").json() == {"title": None}
    assert call("POST", "/t/optional", json={"title": "a"}).json() == {"title": "a"}


def test_a_dict_answer_is_shaped_by_its_response_model() -> None:
    assert call("GET", "/t/answer-from-dict").json() == {"caseId": "ab", "count": 3}


def test_a_plain_function_runs_off_the_event_loop() -> None:
    assert call("GET", "/t/sync").json() == {"event_loop_thread": False}


def test_unknown_paths_and_methods_keep_the_error_shape() -> None:
    missing = call("GET", "/t/nowhere")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = call("DELETE", "/t/echo")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


def test_what_is_not_served_is_refused_when_declared() -> None:
    with pytest.raises(TypeError, match="embedded body"):
        Body(embed=True)
    with pytest.raises(TypeError, match="not served here: max_digits"):
        Query(max_digits=4)  # FastAPI would check it; documenting it unchecked is worse


def test_the_document_is_not_written_where_the_served_routes_are_loaded() -> None:
    # This process imported the served routes: FastAPI's classes can no longer take
    # their place, and building the document here would describe nothing real.
    with pytest.raises(RuntimeError, match="fresh process"):
        build_document()


def test_the_document_comes_from_its_child_process_and_a_failure_is_not_kept(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent asks a child for the document; when the child fails (here: no usable
    interpreter), the answer is 503 ``openapi_unavailable`` and the next request tries
    again rather than keeping the failure."""
    document = OpenApiDocument()
    real = sys.executable
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(ApiError) as refused:
        asyncio.run(document.body())
    assert (refused.value.status, refused.value.code) == (503, "openapi_unavailable")
    assert "could not be written (exit 1)" in caplog.text
    monkeypatch.setattr(sys, "executable", real)
    spec = json.loads(asyncio.run(document.body()))
    assert spec["info"]["title"] == "govedge edge agent — local API"
    assert "/v1/submissions" in spec["paths"]


def test_the_service_s_optimized_python_still_writes_the_whole_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The unit runs the agent with PYTHONOPTIMIZE=2, which drops docstrings; the routes'
    descriptions come from theirs, so the document's child runs unoptimized and the
    document is the same as an unoptimized agent's."""
    plain = json.loads(asyncio.run(OpenApiDocument().body()))
    monkeypatch.setenv("PYTHONOPTIMIZE", "2")
    served = json.loads(asyncio.run(OpenApiDocument().body()))
    assert served == plain
    described = [op for path in plain["paths"].values() for op in path.values()]
    assert sum(1 for op in described if op.get("description")) >= 10
