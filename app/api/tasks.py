"""Routes of producers: submit and read tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from ..domain.tasks import TaskFilter
from ..schemas.common import Name, TaskType
from ..schemas.tasks import (
    BatchSubmitResult,
    CancelRequest,
    Status,
    SubmitDeduplicated,
    SubmitNew,
    Task,
    TaskBatchSubmit,
    TaskList,
    TaskSubmit,
)
from .auth import Authorized
from .deps import Minimal, Service, as_json, minimal_json
from .problems import problem_responses
from .tags import TAG_FILTER_DOC, TagPairs

router = APIRouter(tags=["tasks"])


@router.post(
    "/tasks",
    operation_id="submit_task",
    status_code=201,
    response_model=SubmitNew,
    responses={
        201: {"description": "Created, or superseded the live holder of the dedup key"},
        200: {"model": SubmitDeduplicated, "description": "Deduplicated: the existing task"},
        **problem_responses(409, 413, 422),
    },
)
async def submit_task(body: TaskSubmit, service: Service, caller: Authorized) -> Response:
    """Submit a task. ``on_duplicate`` decides what a held dedup key does."""
    result = await service.tasks.submit(body, children_only=caller.children_only)
    return as_json(result, 200 if result.outcome == "deduplicated" else 201)


@router.post(
    "/tasks/batch",
    operation_id="submit_tasks_batch",
    response_model=BatchSubmitResult,
    responses=problem_responses(413, 422),
)
async def submit_tasks_batch(
    body: TaskBatchSubmit, service: Service, caller: Authorized, minimal: Minimal
) -> Response:
    """Submit many tasks: all validated first, then applied in order in one transaction."""
    result = await service.tasks.submit_batch(
        body.tasks, children_only=caller.children_only, full=not minimal
    )
    return minimal_json(result, minimal)


@router.get(
    "/tasks",
    operation_id="list_tasks",
    response_model=TaskList,
    responses=problem_responses(422),
    description="Tasks in id (submission) order, keyset-paginated by `next_cursor`. "
    + TAG_FILTER_DOC,
)
async def list_tasks(
    service: Service,
    tags: TagPairs,
    status: Annotated[list[Status] | None, Query(description="any of these statuses")] = None,
    type: Annotated[list[TaskType] | None, Query(description="any of these types")] = None,
    group: Annotated[list[Name] | None, Query(description="any of these groups")] = None,
    parent_id: Annotated[Name | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TaskList:
    """Tasks in id (submission) order, newest last; keyset-paginated by ``next_cursor``."""
    flt = TaskFilter(
        statuses=status or (),
        types=type or (),
        groups=group or (),
        parent_id=parent_id,
        tags=tags,
    )
    return await service.tasks.list(flt, cursor, limit)


@router.get(
    "/tasks/{task_id}",
    operation_id="get_task",
    response_model=Task,
    responses=problem_responses(404),
)
async def get_task(task_id: str, service: Service) -> Task:
    """One task, whatever its status, until retention removes it."""
    return await service.tasks.get(task_id)


@router.post(
    "/tasks/{task_id}/cancel",
    operation_id="cancel_task",
    response_model=Task,
    responses=problem_responses(404, 409, 422),
)
async def cancel_task(task_id: str, service: Service, body: CancelRequest | None = None) -> Task:
    """Cancel a task and all its descendants; leased ones are revoked (workers run on_cancel).

    With ``force``, the task and its descendants end at once (also a task already being
    cancelled), without waiting for workers.
    """
    return await service.tasks.cancel(task_id, force=body is not None and body.force)
