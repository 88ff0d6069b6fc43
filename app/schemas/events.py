"""Wire models of the event stream (``GET /events``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from .common import Out, absent_if_none
from .tasks import CancelReason, Phase, Status, TaskError

#: Every event name the stream sends (SPEC §8); a test keeps it equal to the lifecycle's
#: list and to what the SQL writes.
EventName = Literal[
    "task.created",
    "task.deduplicated",
    "task.superseded",
    "task.cancelling",
    "task.leased",
    "task.progress",
    "task.completed",
    "task.failed",
    "task.retrying",
    "task.cancelled",
    "task.expired",
    "task.waiting",
    "task.unblocked",
    "task.finalizing",
    "task.released",
    "task.due",
    "lease.expired",
    "group.paused",
    "group.resumed",
]


class Event(Out):
    """The ``data`` of one event of ``GET /events`` (its ``id`` and ``event`` are also the
    SSE frame's). Task events carry the task's ``status``, ``attempt``, ``priority`` and
    ``phase`` after the change, and the fields of the change itself; group events
    (``group.*``) carry ``group`` and ``tasks``, with no task fields. A test checks every
    event the service emits against this schema."""

    model_config = ConfigDict(extra="allow")

    id: int = Field(description="increasing; resume after it with Last-Event-ID")
    event: EventName
    at: datetime
    task_id: str | None
    type: str | None
    group: str | None
    tags: dict[str, str]
    status: Status | None = absent_if_none()
    attempt: int | None = absent_if_none()
    priority: int | None = absent_if_none()
    phase: Phase | None = absent_if_none()
    worker: str | None = absent_if_none("task.leased: the worker now holding it")
    progress: dict[str, Any] | None = absent_if_none("task.progress: the reported progress")
    error: str | TaskError | None = absent_if_none("task.failed: the error")
    reason: CancelReason | None = absent_if_none("why it is cancelled")
    superseded_by: str | None = absent_if_none()
    supersedes: str | None = absent_if_none("task.created: the task it replaces")
    parent_id: str | None = absent_if_none("task.created: its parent")
    blocked_on: str | None = absent_if_none("the task it waits for")
    run_after: datetime | None = absent_if_none("task.retrying: when it runs again")
    cascade: bool | None = absent_if_none("cancelled because an ancestor was")
    forced: bool | None = absent_if_none("ended by a forced cancel")
    acknowledged: bool | None = absent_if_none("the worker acknowledged its on_cancel")
    tasks: int | None = absent_if_none("group.*: how many tasks the change moved")
