"""Wire models of tag queries: aggregates, value counts, key discovery, bulk cancel."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .common import Model, Name, TaskType, Text
from .tasks import Status


class AggregateGroup(BaseModel):
    """One group: its key (by the ``group_by`` names as asked), count and metrics."""

    key: dict[str, str | None] = Field(
        description='e.g. {"tag.dst_endpoint": "eu-1", "status": "pending"}; '
        "a task lacking the tag gives null"
    )
    count: int
    sum: dict[str, int | None] = Field(default_factory=dict)
    min: dict[str, int | None] = Field(default_factory=dict)
    max: dict[str, int | None] = Field(default_factory=dict)
    avg: dict[str, float | None] = Field(default_factory=dict)


class AggregateResult(BaseModel):
    """Answer of ``GET /tasks/aggregate``: largest groups first."""

    groups: list[AggregateGroup]
    truncated: bool = Field(description="more groups exist than `limit` allowed")


class TagValue(BaseModel):
    """A tag value and how many tasks carry it."""

    value: str
    count: int


class TagValues(BaseModel):
    """Answer of ``GET /tags/{key}/values``: count descending."""

    values: list[TagValue]


class TagKeys(BaseModel):
    """Answer of ``GET /tags``: distinct keys, sorted."""

    keys: list[str]


class CancelFilter(Model):
    """Which live tasks to cancel. At least one criterion is required."""

    tags: dict[str, Text | list[Text]] = Field(
        default_factory=dict, description="AND across keys, OR across a key's listed values"
    )
    status: list[Status] = Field(default_factory=list)
    type: list[TaskType] = Field(default_factory=list)
    group: list[Name] = Field(default_factory=list)


class CancelMatching(Model):
    """Body of ``POST /tasks/cancel``."""

    filter: CancelFilter


class CancelMatchingResult(BaseModel):
    """How many matching live tasks ended at once and how many are being cancelled."""

    cancelled: int
    cancelling: int
