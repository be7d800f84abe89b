"""The local API's routes, declared as for FastAPI and served by Starlette alone.

Why not FastAPI itself: FastAPI builds its ~36 OpenAPI models at import and keeps them,
with its own machinery: ~8 MiB of every outlet PC's agent (docs/performance.md,
"Agent footprint"). The routes keep FastAPI's way of saying things — ``APIRouter``,
``Annotated[str, Path(...)]``, ``Depends``, ``Header(alias=...)``, a pydantic model as
the body, ``response_model`` — so one declaration serves two readers:

- **serving** (this module): each route's signature is read once when the app is built
  into a Starlette route whose parameters are validated by pydantic (the same
  constraints, the same error list FastAPI gives, raised as ``RequestInvalid``);
- **the OpenAPI document** (``openapi_document``): a child process puts FastAPI's own
  classes in this module's place, imports the same route modules and asks FastAPI for
  ``/openapi.json``. The document cannot drift from the routes, and the agent never
  loads FastAPI.

What is served as FastAPI would: path, query and header parameters with their
constraints and aliases; a JSON body as a pydantic model (also when the request's media
type is not JSON: validated as bytes and refused, as FastAPI does); ``Depends`` on a
function of the connection; ``response_model`` or the return annotation serialised
``by_alias`` in JSON mode; a returned ``Response`` passed through; ``def`` endpoints run
in the thread pool. Differences, chosen: dependencies are functions of the connection
only (no sub-dependencies) and are called in the event loop; ``include_in_schema``,
``summary``, ``responses``, ``tags`` and ``examples`` are for the document only.
"""

from __future__ import annotations

import email.message
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

__all__ = [
    "APIRouter",
    "Body",
    "Depends",
    "HTTPBearer",
    "Header",
    "Path",
    "Query",
    "RequestInvalid",
    "starlette_routes",
]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
_UNSET: Final[Any] = object()
# Not ``inspect.Parameter.empty``: as the default of ``_Bound.default`` it made Python
# 3.11.2's dataclasses (Debian 12's) fail under ``-OO``, which writes a class without a
# docstring one from ``inspect.signature``, and that reads the sentinel as "no default".
_REQUIRED: Final[Any] = object()
# The keyword arguments of Path/Query/Header/Body that constrain a value (pydantic's
# Field takes them as they are); the rest (description, examples …) are documentation.
_CONSTRAINTS: Final = frozenset(
    {"min_length", "max_length", "pattern", "ge", "gt", "le", "lt", "multiple_of"}
)
# Keyword arguments that only describe the parameter in the document. Anything else
# (a constraint FastAPI would check that this module does not know) is refused when the
# route is declared, rather than documented and not enforced.
_DOCUMENTATION: Final = frozenset(
    {"description", "examples", "openapi_examples", "title", "deprecated",
     "include_in_schema", "json_schema_extra", "media_type"}
)  # fmt: skip
_ANY: Final[TypeAdapter[Any]] = TypeAdapter(Any)  # answers without a response model
_SOURCES: Final = ("path", "query", "header", "body")
_PATH_PARAM: Final = re.compile(r"{([^}:]+)(?::[^}]*)?}")


class RequestInvalid(Exception):
    """The request's parameters or body failed validation (FastAPI's error list)."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("request validation failed")
        self._errors = [dict(error) for error in errors]

    def errors(self) -> list[dict[str, Any]]:
        """Each problem: ``{"type", "loc", "msg", …}``, ``loc`` starting with its source."""
        return self._errors


class Depends:
    """A value computed from the connection (``dependency(connection)``) for a parameter."""

    def __init__(self, dependency: Callable[..., Any]) -> None:
        self.dependency = dependency


class _Param:
    """Where a parameter comes from, its constraints and its documentation."""

    source: str = ""

    def __init__(
        self, default: Any = _REQUIRED, *, alias: str | None = None, **kwargs: Any
    ) -> None:
        if kwargs.get("embed"):
            raise TypeError("an embedded body is not served here: declare a model")
        unknown = set(kwargs) - _CONSTRAINTS - _DOCUMENTATION - {"embed"}
        if unknown:
            raise TypeError(f"not served here: {', '.join(sorted(unknown))}")
        self.default = _REQUIRED if default is Ellipsis else default
        self.alias = alias
        self.constraints = {k: v for k, v in kwargs.items() if k in _CONSTRAINTS}


class Path(_Param):
    """A parameter from the URL's path (``/windows/{window}``)."""

    source = "path"


class Query(_Param):
    """A parameter from the query string."""

    source = "query"


class Header(_Param):
    """A parameter from a request header (``alias`` names the header)."""

    source = "header"


class Body(_Param):
    """The JSON body (a model; ``None`` default: the body may be absent)."""

    source = "body"


class HTTPBearer:
    """Declares the bearer scheme for the document; the check is ``security.LocalGuard``'s
    (it runs before routing, for WebSockets and preflights too), so serving calls this
    for nothing."""

    def __init__(self, *, auto_error: bool = True, description: str | None = None) -> None:
        self.auto_error = auto_error
        self.description = description

    def __call__(self, connection: HTTPConnection) -> None:
        return None


@dataclass(frozen=True)
class _Declared:
    """One route as declared: where, which methods, the endpoint and its answer."""

    path: str
    methods: tuple[str, ...]
    endpoint: Callable[..., Any]
    response_model: Any
    status_code: int
    dependencies: tuple[Depends, ...]
    websocket: bool = False


@dataclass
class APIRouter:
    """Routes under one ``prefix``; ``include_router`` nests another's."""

    prefix: str = ""
    tags: list[str] | None = None
    include_in_schema: bool = True
    dependencies: Sequence[Depends] = ()
    routes: list[_Declared] = field(default_factory=list)

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Declare a GET route (HEAD answered too)."""
        return self._method("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Declare a POST route."""
        return self._method("POST", path, **options)

    def put(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Declare a PUT route."""
        return self._method("PUT", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Declare a DELETE route."""
        return self._method("DELETE", path, **options)

    def websocket(self, path: str) -> Callable[[Endpoint], Endpoint]:
        """Declare a WebSocket route."""

        def register(endpoint: Endpoint) -> Endpoint:
            self.routes.append(
                _Declared(self.prefix + path, (), endpoint, None, 0, tuple(self.dependencies), True)
            )
            return endpoint

        return register

    def include_router(
        self, router: APIRouter, *, prefix: str = "", dependencies: Sequence[Depends] = ()
    ) -> None:
        """Take ``router``'s routes under this router's prefix (and ``prefix``)."""
        for route in router.routes:
            self.routes.append(
                _Declared(
                    self.prefix + prefix + route.path,
                    route.methods,
                    route.endpoint,
                    route.response_model,
                    route.status_code,
                    (*self.dependencies, *dependencies, *route.dependencies),
                    route.websocket,
                )
            )

    def _method(
        self,
        method: str,
        path: str,
        *,
        response_model: Any = _UNSET,
        status_code: int = 200,
        dependencies: Sequence[Depends] = (),
        **_documentation: Any,
    ) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.routes.append(
                _Declared(
                    self.prefix + path,
                    (method,),
                    endpoint,
                    response_model,
                    status_code,
                    (*self.dependencies, *dependencies),
                )
            )
            return endpoint

        return register


# ---- serving --------------------------------------------------------------------------


Dependency = tuple[Callable[..., Any], bool]  # the function; does it take the connection


@dataclass(frozen=True)
class _Bound:
    """How one endpoint parameter gets its value from a request."""

    name: str
    source: str  # path, query, header, body, depends, connection
    key: str = ""  # the path/query name or header name
    adapter: TypeAdapter[Any] | None = None
    default: Any = _REQUIRED
    dependency: Dependency | None = None


def starlette_routes(router: APIRouter) -> list[BaseRoute]:
    """Every route of ``router`` as a Starlette route, parameters bound once here."""
    out: list[BaseRoute] = []
    for declared in router.routes:
        binder = _Binder(declared)
        if declared.websocket:
            out.append(WebSocketRoute(declared.path, binder.websocket))
        else:
            out.append(Route(declared.path, binder.http, methods=list(declared.methods)))
    return out


class _Binder:
    """One route's parameters and answer, read from its signature."""

    def __init__(self, declared: _Declared) -> None:
        self.declared = declared
        endpoint = declared.endpoint
        hints = typing.get_type_hints(endpoint, include_extras=True)
        in_path = set(_PATH_PARAM.findall(declared.path))
        self.params = [
            _bind(name, hints.get(name, Any), _default_of(parameter), in_path)
            for name, parameter in inspect.signature(endpoint).parameters.items()
        ]
        if declared.websocket:
            for param in self.params:
                if param.source not in ("connection", "depends"):
                    raise TypeError(f"{param.name}: a WebSocket route takes no {param.source}")
        self.route_dependencies = [_dependency(d.dependency) for d in declared.dependencies]
        self.is_async = inspect.iscoroutinefunction(endpoint)
        model = (
            hints.get("return") if declared.response_model is _UNSET else declared.response_model
        )
        self.answer = _answer_adapter(model)
        # An instance of the answer's own class is dumped as it is, anything else validated.
        self.answer_class = model if isinstance(model, type) else None

    async def http(self, request: Request) -> Response:
        for dependency, takes_connection in self.route_dependencies:
            await _call(dependency, takes_connection, request)
        values = await self._values(request)
        if self.is_async:
            result = await self.declared.endpoint(**values)
        else:
            result = await run_in_threadpool(self.declared.endpoint, **values)
        if isinstance(result, Response):
            return result
        return Response(
            self._render(result),
            status_code=self.declared.status_code,
            media_type="application/json",
        )

    async def websocket(self, websocket: WebSocket) -> None:
        values: dict[str, Any] = {}
        for param in self.params:
            if param.source == "connection":
                values[param.name] = websocket
            elif param.dependency is not None:
                values[param.name] = await _call(*param.dependency, websocket)
        await self.declared.endpoint(**values)

    def _render(self, result: Any) -> bytes:
        adapter = self.answer
        if adapter is None:
            return _ANY.dump_json(result, by_alias=True)
        if self.answer_class is None or not isinstance(result, self.answer_class):
            # A dict or another object: validated as FastAPI does, fields it lacks refused.
            result = adapter.validate_python(result, from_attributes=True)
        return adapter.dump_json(result, by_alias=True)

    async def _values(self, request: Request) -> dict[str, Any]:
        values: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for param in self.params:
            if param.source == "connection":
                values[param.name] = request
                continue
            if param.dependency is not None:
                values[param.name] = await _call(*param.dependency, request)
                continue
            body = param.source == "body"
            loc: tuple[Any, ...] = (param.source,) if body else (param.source, param.key)
            try:
                raw = await _raw(request, param)
            except RequestInvalid as exc:
                errors.extend(exc.errors())
                continue
            if raw is _REQUIRED:
                if param.default is _REQUIRED:
                    errors.append({"type": "missing", "loc": loc, "msg": "Field required"})
                else:
                    values[param.name] = param.default
                continue
            assert param.adapter is not None
            try:
                values[param.name] = param.adapter.validate_python(raw, from_attributes=True)
            except ValidationError as exc:
                errors.extend(
                    {**error, "loc": (*loc, *error["loc"])}
                    for error in exc.errors(include_url=False, include_input=False)
                )
        if errors:
            # FastAPI's order: path, query, header, then body, whatever the signature's.
            errors.sort(key=lambda error: _SOURCES.index(str(error["loc"][0])))
            raise RequestInvalid(errors)
        return values


async def _raw(request: Request, param: _Bound) -> Any:
    """The parameter's raw value, or ``_REQUIRED`` when the request has none."""
    if param.source == "path":
        return request.path_params.get(param.key, _REQUIRED)
    if param.source == "query":
        return request.query_params.get(param.key, _REQUIRED)
    if param.source == "header":
        return request.headers.get(param.key, _REQUIRED)
    body = await request.body()
    if not body:
        return _REQUIRED
    # As FastAPI's strict content type: JSON only when the request says so; other bytes
    # are validated as they are and refused ("a valid dictionary"), with a hint.
    message = email.message.Message()
    message["content-type"] = request.headers.get("content-type", "")
    subtype = message.get_content_subtype()
    if message.get_content_maintype() != "application" or not (
        subtype == "json" or subtype.endswith("+json")
    ):
        return body
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestInvalid(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    except UnicodeDecodeError:
        raise RequestInvalid(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]
        ) from None


def _dependency(function: Callable[..., Any]) -> Dependency:
    wanted = len(inspect.signature(function).parameters)
    if wanted > 1:
        raise TypeError(f"{function!r}: a dependency takes the connection or nothing")
    return function, wanted == 1


async def _call(
    function: Callable[..., Any], takes_connection: bool, connection: HTTPConnection
) -> Any:
    value = function(connection) if takes_connection else function()
    if inspect.isawaitable(value):
        value = await value
    return value


def _default_of(parameter: inspect.Parameter) -> Any:
    return _REQUIRED if parameter.default is inspect.Parameter.empty else parameter.default


def _bind(name: str, hint: Any, default: Any, in_path: set[str]) -> _Bound:
    base, marker = _split(hint)
    if isinstance(marker, Depends):
        return _Bound(name, "depends", dependency=_dependency(marker.dependency))
    if isinstance(base, type) and issubclass(base, HTTPConnection):
        return _Bound(name, "connection")
    if marker is None:
        if name in in_path:
            marker = Path()
        elif _is_model(base):
            marker = Body()
        else:
            marker = Query()
    assert isinstance(marker, _Param)
    if marker.default is not _REQUIRED:
        default = marker.default
    key = marker.alias or (name.replace("_", "-") if marker.source == "header" else name)
    if marker.source == "header":
        key = key.lower()
    target: Any = base
    if marker.constraints:
        target = typing.Annotated[base, Field(**marker.constraints)]
    return _Bound(name, marker.source, key, TypeAdapter(target), default)


def _split(hint: Any) -> tuple[Any, Depends | _Param | None]:
    """``Annotated[T, marker]`` → ``(T, marker)``; anything else → ``(hint, None)``."""
    if typing.get_origin(hint) is typing.Annotated:
        base, *metadata = typing.get_args(hint)
        for item in metadata:
            if isinstance(item, Depends | _Param):
                return base, item
        return base, None
    return hint, None


_UnionType: Final = type(int | None)


def _is_model(hint: Any) -> bool:
    union = typing.get_origin(hint) in (typing.Union, _UnionType)
    options = typing.get_args(hint) if union else (hint,)
    return any(isinstance(o, type) and issubclass(o, BaseModel) for o in options)


def _answer_adapter(model: Any) -> TypeAdapter[Any] | None:
    """The adapter answers are serialised with (``response_model``, else the return type),
    none when it is unset, ``None`` or (may be) a ``Response``."""
    if model is None or model is Any or _mentions_response(model):
        return None
    return TypeAdapter(model)


def _mentions_response(hint: Any) -> bool:
    if isinstance(hint, type) and issubclass(hint, Response):
        return True
    return any(_mentions_response(arg) for arg in typing.get_args(hint))
