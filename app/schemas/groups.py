"""Wire models of groups (concurrency limits and pause)."""

from __future__ import annotations

from pydantic import Field, StrictBool

from .common import Int, Model, Out


class GroupUpdate(Model):
    """Omitted fields keep their value; ``max_concurrency: null`` means unlimited."""

    max_concurrency: Int | None = Field(default=None, ge=1, le=1_000_000)
    paused: StrictBool | None = None


class Group(Out):
    """A group's settings and live counts."""

    name: str
    max_concurrency: int | None
    paused: bool
    running: int
    pending: int


class GroupList(Out):
    """Every configured group and every group with live tasks."""

    groups: list[Group]
