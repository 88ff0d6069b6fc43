"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel

from ..domain.service import Taskmill


async def _service(request: Request) -> Taskmill:
    # async: a plain function would run in a worker thread on every request
    service: Taskmill = request.app.state.taskmill
    return service


Service = Annotated[Taskmill, Depends(_service)]

JSON = "application/json"


async def _wants_minimal(
    prefer: Annotated[
        str | None,
        Header(
            description="`return=minimal` (RFC 7240): answer each item's task id and status "
            "without the whole task record (`Preference-Applied` confirms it)"
        ),
    ] = None,
) -> bool:
    # RFC 7240: comma-separated preferences, each `token[=value]`, parameters after `;`.
    for preference in (prefer or "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() == "return":
            return value.strip().strip('"').lower() == "minimal"
    return False


#: ``Prefer: return=minimal`` (RFC 7240) asks a batch to leave out the task records:
#: building and encoding them is most of a batch's cost in the server.
Minimal = Annotated[bool, Depends(_wants_minimal)]


def minimal_json(model: BaseModel, minimal: bool) -> Response:
    """``as_json``, saying that ``return=minimal`` was applied when it was."""
    response = as_json(model)
    if minimal:
        response.headers["Preference-Applied"] = "return=minimal"
    return response


def as_json(model: BaseModel, status_code: int = 200) -> Response:
    """The model as a JSON response, bypassing FastAPI's response re-validation.

    For the hot paths: the use cases build these models themselves, so validating them
    again against ``response_model`` (which still documents the route) is pure cost.
    """
    return Response(model.model_dump_json(), status_code=status_code, media_type=JSON)
