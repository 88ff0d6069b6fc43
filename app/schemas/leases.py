"""Wire models of the lease protocol (SPEC §5)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, model_validator

from .common import IO, Int, Json, JsonObject, Model, Name, Number, Out, TaskType, Text, check_json
from .problems import Problem
from .tasks import Phase, Progress, Status, Task


class LeaseRequest(Model):
    """Ask for up to ``max_tasks`` tasks; wait up to ``wait_seconds`` for work to arrive."""

    worker_id: Name
    types: list[TaskType] | None = Field(default=None, max_length=100)
    groups: list[Name] | None = Field(default=None, max_length=100)
    max_tasks: Int = Field(default=1, ge=1, le=1000)
    lease_seconds: Number = Field(default=30.0, gt=0, le=3600)
    wait_seconds: Number = Field(default=0.0, ge=0, le=60)


class LeasedTask(Out):
    """What a worker needs to run a task."""

    id: str
    type: str
    payload: Any
    tags: dict[str, str]
    priority: int
    group: str | None
    dedup_key: str | None
    label: str | None
    attempt: int
    max_attempts: int
    expected_io: IO
    state: dict[str, Any] | None
    previous_state: dict[str, Any] | None = Field(
        default=None, description="the newest state map of the tasks this one superseded"
    )


class CancelledDirective(Out):
    """The task was cancelled: run the on_cancel hook, then acknowledge."""

    reason: Literal["cancelled"]


class SupersededDirective(Out):
    """The task was superseded: run the on_cancel hook, then acknowledge."""

    reason: Literal["superseded"]
    superseded_by: str = Field(description="the task that replaced it")


#: The server revoked the lease; ``reason`` tells which kind.
CancelDirective = Annotated[CancelledDirective | SupersededDirective, Field(discriminator="reason")]


class Lease(Out):
    """One granted lease. ``lease_id`` is the fencing token for every later call.

    ``phase`` says what to run: the handler (``execute``), its ``finalize`` hook once the
    children it spawned ended, or its ``on_cancel`` hook (``cancel``: the task was
    cancelled or superseded after its execute phase ended; ``cancel`` says why), then
    acknowledge with ``POST /leases/{lease_id}/cancelled``.
    """

    lease_id: str
    expires_at: datetime
    phase: Phase
    cancel: CancelDirective | None = None
    task: LeasedTask


class LeaseResponse(Out):
    """Answer of ``POST /leases``: empty when no work arrived within ``wait_seconds``."""

    leases: list[Lease]


class Heartbeat(Model):
    """Keep a lease alive; optionally report progress and replace the state map."""

    extend_seconds: Number | None = Field(default=None, gt=0, le=3600)
    progress: Progress | None = None
    state: JsonObject | None = None


class HeartbeatResult(Out):
    """Answer of a heartbeat."""

    expires_at: datetime
    cancel: CancelDirective | None


class Complete(Model):
    """Report success."""

    result: Json = None
    state: JsonObject | None = None
    actual_io: IO | None = None


class CompleteItem(Complete):
    """One item of a batch completion."""

    lease_id: Text


class CompleteBatch(Model):
    """Complete many leases in one transaction; each item succeeds or fails on its own."""

    items: list[CompleteItem] = Field(min_length=1)


class ErrorObject(Model):
    """A structured error: ``message`` plus any fields the worker wants to keep."""

    model_config = ConfigDict(extra="allow")

    message: Text

    @model_validator(mode="after")
    def _extra_is_storable(self) -> ErrorObject:
        # The extra fields are stored as jsonb too: same NUL/finite/depth rules as payloads.
        check_json(self.model_extra or {})
        return self


class Fail(Model):
    """Report failure. Retried with backoff while attempts remain and ``retryable``."""

    error: Text | ErrorObject
    retryable: StrictBool = True
    retry_after_seconds: Number | None = Field(default=None, ge=0, le=7 * 86400)


class StatePatch(Model):
    """Change the state map: shallow-merge into it (default) or replace it."""

    state: JsonObject
    mode: Literal["merge", "replace"] = "merge"


class CompletedItem(Out):
    """A batch item that completed its lease."""

    lease_id: str
    ok: Literal[True]
    status: Status = Field(description="the task's status")
    task: Task | None = Field(
        description="the task's whole record; null when the request said `Prefer: return=minimal`"
    )


class RefusedItem(Out):
    """A batch item refused on its own: ``error`` says why, as a problem would."""

    lease_id: str
    ok: Literal[False]
    error: Problem


#: Per-item outcome of a batch completion, told apart by ``ok``.
CompleteItemResult = CompletedItem | RefusedItem


class CompleteBatchResult(Out):
    """Answer of ``POST /leases/complete``, in input order."""

    results: list[CompleteItemResult]
