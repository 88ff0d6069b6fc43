"""Wire models of the lease protocol (SPEC §5)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from .common import IO, Json, JsonObject, Model, Name, TaskType, Text, check_json
from .tasks import Phase, Progress, Status, Task


class LeaseRequest(Model):
    """Ask for up to ``max_tasks`` tasks; wait up to ``wait_seconds`` for work to arrive."""

    worker_id: Name
    types: list[TaskType] | None = Field(default=None, max_length=100)
    groups: list[Name] | None = Field(default=None, max_length=100)
    max_tasks: int = Field(default=1, ge=1, le=1000)
    lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    wait_seconds: float = Field(default=0.0, ge=0, le=60)


class LeasedTask(BaseModel):
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
    previous_state: dict[str, Any] | None = None


class CancelDirective(BaseModel):
    """The server revoked the lease: run the on_cancel hook, then acknowledge."""

    reason: Literal["superseded", "cancelled"]
    superseded_by: str | None = None


class Lease(BaseModel):
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


class LeaseResponse(BaseModel):
    """Answer of ``POST /leases``: empty when no work arrived within ``wait_seconds``."""

    leases: list[Lease]


class Heartbeat(Model):
    """Keep a lease alive; optionally report progress and replace the state map."""

    extend_seconds: float | None = Field(default=None, gt=0, le=3600)
    progress: Progress | None = None
    state: JsonObject | None = None


class HeartbeatResult(BaseModel):
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
    retry_after_seconds: float | None = Field(default=None, ge=0, le=7 * 86400)


class StatePatch(Model):
    """Change the state map: shallow-merge into it (default) or replace it."""

    state: JsonObject
    mode: Literal["merge", "replace"] = "merge"


class CompleteItemResult(BaseModel):
    """Per-item outcome of a batch completion."""

    lease_id: str
    ok: bool
    status: Status | None = Field(default=None, description="the task's status, when ok")
    task: Task | None = Field(
        default=None,
        description="the task's whole record when ok, unless the request said "
        "`Prefer: return=minimal`",
    )
    error: dict[str, Any] | None = Field(
        default=None, description="problem+json body explaining why this item was refused"
    )


class CompleteBatchResult(BaseModel):
    """Answer of ``POST /leases/complete``, in input order."""

    results: list[CompleteItemResult]
