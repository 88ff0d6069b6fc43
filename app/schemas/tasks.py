"""Wire models of tasks: submission, the task record, lists."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, model_validator

from .common import IO, Instant, Int, Json, Model, Name, Number, Out, Tags, TaskType, Text

Status = Literal[
    "pending",
    "scheduled",
    "blocked",
    "running",
    "waiting",
    "paused",
    "cancelling",
    "completed",
    "failed",
    "cancelled",
    "superseded",
    "expired",
]
#: What a lease runs: the handler, its finalize hook, or its on_cancel hook.
Phase = Literal["execute", "finalize", "cancel"]
OnDuplicate = Literal["skip", "supersede", "reject"]
#: Why a task is being (or was) cancelled: a cancel, or a supersede of its dedup key.
CancelReason = Literal["cancelled", "superseded"]


class RetryPolicy(Model):
    """How a failed task is retried."""

    max_attempts: Int = Field(default=3, ge=1, le=1000)
    backoff: Literal["exponential", "fixed"] = "exponential"
    base_seconds: Number = Field(default=1.0, ge=0, le=86400)
    max_seconds: Number = Field(default=300.0, ge=0, le=7 * 86400)

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> RetryPolicy:
        if self.max_seconds < self.base_seconds:
            raise ValueError("max_seconds must be at least base_seconds")
        return self


class TaskSubmit(Model):
    """One task to submit (SPEC §2)."""

    type: TaskType
    payload: Json = None
    priority: Int = Field(default=128, ge=0, le=255, description="0-255, lower runs first")
    dedup_key: Text | None = Field(default=None, min_length=1, max_length=512)
    on_duplicate: OnDuplicate = "skip"
    group: Name | None = None
    tags: Tags = Field(default_factory=dict)
    expected_io: IO = Field(default_factory=IO)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    run_after: Instant | None = None
    ttl_seconds: Number | None = Field(default=None, gt=0, le=365 * 86400)
    label: Text | None = Field(default=None, max_length=1024)
    parent_id: Text | None = Field(
        default=None,
        max_length=64,
        description="make this a child of a running task (submitted by its lease holder)",
    )
    parent_lease_id: Text | None = Field(
        default=None,
        max_length=100,
        description="the lease its submitter holds on parent_id (required with a worker token)",
    )
    fail_fast: StrictBool = Field(
        default=True,
        description="a child's permanent failure cancels its siblings and fails this task",
    )


class CancelRequest(Model):
    """Options of a cancel."""

    force: StrictBool = Field(
        default=False,
        description="end the task and every descendant at once, without waiting for "
        "workers to run on_cancel (an operator's way out of a stuck cancel)",
    )


class TaskBatchSubmit(Model):
    """Up to ``max_batch_size`` tasks applied in order in one transaction."""

    tasks: list[TaskSubmit] = Field(min_length=1)


class LeaseInfo(Out):
    """The current lease of a running or cancelling task."""

    id: str
    worker: str | None
    expires_at: datetime | None


class Progress(Model):
    """A worker's progress report."""

    fraction: Number | None = Field(default=None, ge=0, le=1)
    message: Text | None = Field(default=None, max_length=1024)


class Children(Out):
    """Counts of a task's children."""

    total: int
    live: int = Field(description="not yet terminal (cancelling included)")
    completed: int
    failed: int


class TaskError(Out):
    """Why a task failed: ``message``, and whatever fields the worker (or the server:
    ``child_id``, ``worker``) added."""

    model_config = ConfigDict(extra="allow")

    message: str


class Task(Out):
    """A task as stored, with every server-set field."""

    id: str
    type: str
    status: Status
    priority: int
    payload: Any
    dedup_key: str | None
    group: str | None
    tags: dict[str, str]
    label: str | None
    expected_io: IO
    actual_io: IO | None
    retry: RetryPolicy
    attempt: int
    run_after: datetime
    ttl_deadline: datetime | None
    parent_id: str | None
    phase: Phase
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease: LeaseInfo | None
    progress: Progress | None
    state: dict[str, Any] | None
    result: Any
    error: str | TaskError | None = Field(
        description="a failed attempt's error: the worker's text or object"
    )
    cancel_reason: CancelReason | None
    superseded_by: str | None
    supersedes: str | None
    blocked_on: str | None = Field(
        description="a blocked task waits for this task and all its descendants to end"
    )
    fail_fast: bool
    children: Children


class SubmitCreated(Out):
    """A new task (``201``)."""

    outcome: Literal["created"]
    task: Task


class SubmitSuperseded(Out):
    """A new task that replaced the live holder of its dedup key (``201``)."""

    outcome: Literal["superseded"]
    task: Task
    replaced_task_id: str = Field(description="the task it superseded")


class SubmitDeduplicated(Out):
    """The live task that already holds the dedup key (``200``, ``on_duplicate=skip``)."""

    outcome: Literal["deduplicated"]
    task: Task


#: Answer of ``POST /tasks``, told apart by ``outcome``.
SubmitResult = Annotated[
    SubmitCreated | SubmitSuperseded | SubmitDeduplicated, Field(discriminator="outcome")
]
#: The ``201`` answers of ``POST /tasks``.
SubmitNew = Annotated[SubmitCreated | SubmitSuperseded, Field(discriminator="outcome")]

_TASK_OR_MINIMAL = Field(
    description="the task's whole record; null when the request said `Prefer: return=minimal`"
)


class BatchItemAccepted(Out):
    """A batch item that created a task, or found the live holder of its key."""

    outcome: Literal["created", "deduplicated"]
    task_id: str = Field(description="the created task, or the holder of the key")
    status: Status
    task: Task | None = _TASK_OR_MINIMAL


class BatchItemSuperseded(Out):
    """A batch item whose new task replaced the live holder of its dedup key."""

    outcome: Literal["superseded"]
    task_id: str = Field(description="the new task")
    status: Status
    task: Task | None = _TASK_OR_MINIMAL
    replaced_task_id: str = Field(description="the task it superseded")


class BatchItemRejected(Out):
    """A batch item refused by ``on_duplicate=reject``: no task was created."""

    outcome: Literal["rejected"]
    existing_task_id: str = Field(description="the live task that holds the dedup key")


#: One item's outcome in a batch, in input order, told apart by ``outcome``.
BatchItemResult = Annotated[
    BatchItemAccepted | BatchItemSuperseded | BatchItemRejected, Field(discriminator="outcome")
]


class BatchSubmitResult(Out):
    """Answer of ``POST /tasks/batch``."""

    results: list[BatchItemResult]


class TaskList(Out):
    """A page of tasks; pass ``next_cursor`` as ``cursor`` for the next page."""

    tasks: list[Task]
    next_cursor: str | None
