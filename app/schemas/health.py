"""Health answers."""

from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    """``/healthz`` and ``/readyz`` answer."""

    status: str
    database: str | None = None
    migrations: str | None = None
