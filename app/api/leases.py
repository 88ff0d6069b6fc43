"""Routes of workers: the lease protocol."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..schemas.leases import (
    Complete,
    CompleteBatch,
    CompleteBatchResult,
    Fail,
    Heartbeat,
    HeartbeatResult,
    LeaseRequest,
    LeaseResponse,
    StatePatch,
)
from ..schemas.tasks import Task
from .deps import Minimal, Service, as_json, minimal_json
from .problems import problem_responses

router = APIRouter(tags=["leases"])

_HELD = problem_responses(404, 409, 410, 413, 422)


@router.post(
    "/leases",
    operation_id="lease_tasks",
    response_model=LeaseResponse,
    responses=problem_responses(422),
)
async def lease_tasks(body: LeaseRequest, service: Service, request: Request) -> Response:
    """Lease up to ``max_tasks`` tasks; long-polls up to ``wait_seconds`` for work."""
    return as_json(await service.leases.lease(body, gone=request.is_disconnected))


@router.post(
    "/leases/complete",
    operation_id="complete_leases_batch",
    response_model=CompleteBatchResult,
    responses=problem_responses(413, 422),
)
async def complete_leases_batch(
    body: CompleteBatch, service: Service, minimal: Minimal
) -> Response:
    """Complete many leases in one statement; each item reports its own outcome."""
    return minimal_json(await service.leases.complete_batch(body, full=not minimal), minimal)


@router.post(
    "/leases/{lease_id}/heartbeat",
    operation_id="heartbeat_lease",
    response_model=HeartbeatResult,
    responses=_HELD,
)
async def heartbeat_lease(lease_id: str, body: Heartbeat, service: Service) -> Response:
    """Extend the lease; ``cancel`` in the answer asks the worker to stop."""
    return as_json(await service.leases.heartbeat(lease_id, body))


@router.post(
    "/leases/{lease_id}/complete",
    operation_id="complete_lease",
    response_model=Task,
    responses=_HELD,
)
async def complete_lease(lease_id: str, body: Complete, service: Service) -> Response:
    """Report success."""
    return as_json(await service.leases.complete(lease_id, body))


@router.post(
    "/leases/{lease_id}/fail",
    operation_id="fail_lease",
    response_model=Task,
    responses=_HELD,
)
async def fail_lease(lease_id: str, body: Fail, service: Service) -> Task:
    """Report failure; retried with backoff while attempts remain and ``retryable``."""
    return await service.leases.fail(lease_id, body)


@router.post(
    "/leases/{lease_id}/cancelled",
    operation_id="acknowledge_cancel",
    response_model=Task,
    responses=problem_responses(404, 409, 410, 422),
)
async def acknowledge_cancel(lease_id: str, service: Service) -> Task:
    """Acknowledge a cancel directive after running on_cancel; the task then ends."""
    return await service.leases.acknowledge_cancel(lease_id)


@router.post(
    "/leases/{lease_id}/release",
    operation_id="release_lease",
    response_model=Task,
    responses=problem_responses(404, 409, 410, 422),
)
async def release_lease(lease_id: str, service: Service) -> Task:
    """Give the task back unfinished (graceful stop); the attempt is not counted."""
    return await service.leases.release(lease_id)


@router.patch(
    "/leases/{lease_id}/state",
    operation_id="update_lease_state",
    response_model=Task,
    responses=_HELD,
)
async def update_lease_state(lease_id: str, body: StatePatch, service: Service) -> Task:
    """Merge into (default) or replace the task's state map."""
    return await service.leases.set_state(lease_id, body)
