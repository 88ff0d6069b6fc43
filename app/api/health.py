"""Health endpoints for load balancers: no token needed."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..schemas.health import Liveness, Readiness
from .deps import Service

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """The process is up and serving."""
    return Liveness(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Database down or migrations pending"}},
)
async def readyz(service: Service) -> JSONResponse:
    """Ready when the database answers and its schema is at the newest migration."""
    reachable, current = await service.readiness()
    body = Readiness(
        status="ok" if reachable and current else "unavailable",
        database="ok" if reachable else "unreachable",
        migrations="current" if current else ("pending" if reachable else "unknown"),
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)
