"""Routes of groups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ..schemas.groups import Group, GroupList, GroupUpdate
from .deps import Service
from .problems import problem_responses

router = APIRouter(tags=["groups"])

GroupName = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]


@router.put(
    "/groups/{name:path}",
    operation_id="put_group",
    response_model=Group,
    responses=problem_responses(422),
)
async def put_group(name: GroupName, body: GroupUpdate, service: Service) -> Group:
    """Set a group's concurrency limit and pause state; omitted fields keep their value."""
    return await service.groups.update(name, body)


@router.get("/groups", operation_id="list_groups", response_model=GroupList)
async def list_groups(service: Service) -> GroupList:
    """Every configured group and every group with live tasks, with counts."""
    return await service.groups.list()
