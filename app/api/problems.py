"""RFC 9457 problem+json for every error, and the OpenAPI entries that document them."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..domain.errors import DomainError, StoreUnavailable, problem_type

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
    """OpenAPI ``responses`` entries for the given error statuses."""
    ref = {"$ref": "#/components/schemas/Problem"}
    return {
        code: {"description": _DESCRIPTIONS[code], "content": {PROBLEM_JSON: {"schema": ref}}}
        for code in codes
    }


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": problem_type(code), "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _field(loc: tuple[Any, ...]) -> str:
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    out = ""
    for part in parts:
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


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        413: "Content too large",
    }
    title = titles.get(exc.status_code, "Error")
    code = "too-large" if exc.status_code == 413 else title.lower().replace(" ", "-")
    response = problem(exc.status_code, code, title, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
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
