"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from pydantic import BaseModel

from ..domain.service import Taskmill


async def _service(request: Request) -> Taskmill:
    # async: a plain function would run in a worker thread on every request
    service: Taskmill = request.app.state.taskmill
    return service


Service = Annotated[Taskmill, Depends(_service)]

JSON = "application/json"


def as_json(model: BaseModel, status_code: int = 200) -> Response:
    """The model as a JSON response, bypassing FastAPI's response re-validation.

    For the hot paths: the use cases build these models themselves, so validating them
    again against ``response_model`` (which still documents the route) is pure cost.
    """
    return Response(model.model_dump_json(), status_code=status_code, media_type=JSON)
