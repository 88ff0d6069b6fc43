"""Wire models of tag queries: aggregates, value counts, key discovery, bulk cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .common import TAG_KEY_PATTERN, Model, Name, Out, TaskType, Text
from .tasks import Status

#: The numeric fields that aggregates sum, min, max and average (the store maps each to
#: its column; a test keeps the two equal).
MetricField = Literal[
    "expected_io.read_bytes",
    "expected_io.write_bytes",
    "expected_io.net_rx_bytes",
    "expected_io.net_tx_bytes",
    "actual_io.read_bytes",
    "actual_io.write_bytes",
    "actual_io.net_rx_bytes",
    "actual_io.net_tx_bytes",
    "priority",
    "attempt",
]
#: What aggregates group by: ``tag.<key>``, ``status``, ``type`` or ``group``.
GroupByField = Annotated[
    str, StringConstraints(pattern=r"^(status|type|group|tag\." + TAG_KEY_PATTERN[1:-1] + ")$")
]


class AggregateGroup(Out):
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


class AggregateResult(Out):
    """Answer of ``GET /tasks/aggregate``: largest groups first."""

    groups: list[AggregateGroup]
    truncated: bool = Field(description="more groups exist than `limit` allowed")


class TagValue(Out):
    """A tag value and how many tasks carry it."""

    value: str
    count: int


class TagValues(Out):
    """Answer of ``GET /tags/{key}/values``: count descending."""

    values: list[TagValue]


class TagKeys(Out):
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


class CancelMatchingResult(Out):
    """How many matching live tasks ended at once and how many are being cancelled."""

    cancelled: int
    cancelling: int
