"""RFC 9457 problem+json for every error, and the OpenAPI entries that document them."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..domain.errors import DomainError, StoreUnavailable, problem_type
from ..schemas.problems import ProblemCode

log = logging.getLogger("taskmill.api")

PROBLEM_JSON = "application/problem+json"

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or invalid bearer token",
    403: "The token's role may not do this",
    404: "Not found",
    409: "Conflict with the current state",
    410: "The lease expired or was replaced",
    413: "Content too large",
    422: "Invalid input; `errors` names each offending field",
    503: "Database unavailable; retry later",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses (a 422's body always
    has ``errors``: its own schema)."""

    def schema(code: int) -> dict[str, str]:
        name = "ValidationProblem" if code == 422 else "Problem"
        return {"$ref": f"#/components/schemas/{name}"}

    return {
        code: {
            "description": _DESCRIPTIONS[code],
            "content": {PROBLEM_JSON: {"schema": schema(code)}},
        }
        for code in codes
    }


def problem(status: int, code: ProblemCode, title: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": problem_type(code), "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


# pydantic names the branch of a union it tried in ``loc``, e.g. ``error`` is
# ``str | ErrorObject`` and its errors sit at ("error", "function-after[_no_nul(), str]");
# a client knows the field as ``error``.
_UNION_BRANCH = re.compile(r"^[a-z][\w-]*\[.*\]$|^(str|int|float|bool|none|bytes)$")


def _field(loc: tuple[Any, ...]) -> str:
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    out = ""
    for part in parts:
        if isinstance(part, str) and out and _UNION_BRANCH.match(part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or str(loc[0] if loc else "body")


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            # A JSON syntax error's loc is ("body", <character offset>): the field is the body.
            "field": "body" if e["type"] == "json_invalid" else _field(tuple(e.get("loc", ()))),
            "message": e.get("msg", ""),
            "type": e["type"],
        }
        for e in exc.errors()
    ]
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return problem(422, "validation-error", "Invalid request", f"invalid: {fields}", errors=errors)


async def _domain(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    body = exc.as_problem()
    return JSONResponse(body, status_code=exc.status, media_type=PROBLEM_JSON)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError | UnicodeDecodeError):
        # FastAPI answers 400 "error parsing the body" when the JSON parser itself gives up:
        # nesting deeper than it recurses, or bytes that are not UTF-8. Both are invalid
        # input like any other: a 422 that names the body.
        message = (
            "JSON nests too deep to parse"
            if isinstance(exc.__cause__, RecursionError)
            else "the body is not valid UTF-8"
        )
        errors = [{"field": "body", "message": message, "type": "json_invalid"}]
        detail = f"invalid: body ({message})"
        return problem(422, "validation-error", "Invalid request", detail, errors=errors)
    code, title = _HTTP_PROBLEMS.get(exc.status_code, ("bad-request", "Bad request"))
    response = problem(exc.status_code, code, title, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        # Starlette's Allow names the methods of the first route matching the path only
        # (POST /tasks for OPTIONS /tasks, forgetting GET): name every route's.
        allowed = _allowed_methods(request)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response


#: Starlette's own errors: 404 and 405 of routing, 400 and 413 of reading the body.
_HTTP_PROBLEMS: dict[int, tuple[ProblemCode, str]] = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("too-large", "Content too large"),
}


def _flat_routes(routes: Any) -> Any:
    # FastAPI ≥ 0.13x keeps included routers as nodes; this walks them to the routes.
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: the list is flat already
        return routes
    return iter_route_contexts(routes)


def _allowed_methods(request: Request) -> list[str]:
    # The most specific routes matching the path win: /tasks/batch is POST only, although
    # GET /tasks/{task_id} would take it (and answer 404).
    found: dict[int, set[str]] = {}
    path = request.scope.get("path", "")
    for route in _flat_routes(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            params = str(getattr(route, "path_format", "")).count("{")
            found.setdefault(params, set()).update(getattr(route, "methods", None) or ())
    return sorted(found[min(found)]) if found else []


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("answered 503: %s", exc)  # which outage, or which repeated abort
    return problem(503, "unavailable", "Service unavailable", "the database is unavailable")


async def _internal(_: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error", exc_info=exc)
    return problem(500, "internal-error", "Internal error", "an internal error occurred")


def install(app: FastAPI) -> None:
    """Register the handlers: every error leaves as problem+json, never a stack trace."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(StoreUnavailable, _unavailable)
    app.add_exception_handler(Exception, _internal)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 before they are read whole."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooBig(413, f"request body over {self.limit} bytes")
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooBig:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Any, receive: Any, send: Any) -> None:
        response = problem(
            413, "too-large", "Content too large", f"request body over {self.limit} bytes"
        )
        await response(scope, receive, send)


class _TooBig(StarletteHTTPException):
    # An HTTPException, so that FastAPI re-raises it while reading a streamed (chunked)
    # body instead of turning it into "400 error parsing the body"; _http renders it.
    pass
