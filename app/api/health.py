"""Health endpoints for load balancers: no token needed."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..schemas.health import Health
from .deps import Service

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", operation_id="healthz", response_model=Health, response_model_exclude_none=True
)
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Database down or migrations pending"}},
)
async def readyz(service: Service) -> JSONResponse:
    """Ready when the database answers and its schema is at the newest migration."""
    reachable, current = await service.readiness()
    body = Health(
        status="ok" if reachable and current else "unavailable",
        database="ok" if reachable else "unreachable",
        migrations="current" if current else ("pending" if reachable else "unknown"),
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)
