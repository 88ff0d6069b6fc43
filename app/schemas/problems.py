"""RFC 9457 problem details."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FieldError(BaseModel):
    """One invalid field: where it is and what is wrong."""

    field: str
    message: str
    type: str


class Problem(BaseModel):
    """``application/problem+json`` body of every error answer."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    existing_task_id: str | None = None
