"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..domain.service import Taskmill


def _service(request: Request) -> Taskmill:
    service: Taskmill = request.app.state.taskmill
    return service


Service = Annotated[Taskmill, Depends(_service)]
