"""Wire models of groups (concurrency limits and pause)."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictBool

from .common import Model


class GroupUpdate(Model):
    """Omitted fields keep their value; ``max_concurrency: null`` means unlimited."""

    max_concurrency: int | None = Field(default=None, ge=1, le=1_000_000)
    paused: StrictBool | None = None


class Group(BaseModel):
    """A group's settings and live counts."""

    name: str
    max_concurrency: int | None
    paused: bool
    running: int
    pending: int


class GroupList(BaseModel):
    """Every configured group and every group with live tasks."""

    groups: list[Group]
