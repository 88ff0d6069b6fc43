"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..domain.service import Taskmill


async def _service(request: Request) -> Taskmill:
    # async: a plain function would run in a worker thread on every request
    service: Taskmill = request.app.state.taskmill
    return service


Service = Annotated[Taskmill, Depends(_service)]
