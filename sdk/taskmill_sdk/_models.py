"""Typed views of the server's answers. Each keeps the full JSON in ``raw``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Task:
    """A task as the server reports it (``GET /tasks/{id}``).

    ``phase`` is what its next or current lease runs: ``execute`` (the handler),
    ``finalize`` (its finalize hook, once its children ended) or ``cancel`` (its
    ``on_cancel`` hook: it was revoked after its execute phase had ended).
    ``cancel_reason`` (``cancelled`` or ``superseded``) is set once a cancel was asked.
    ``blocked_on`` is the task a ``blocked`` one waits for (it and its descendants);
    ``ttl_deadline`` is when a task not started by then expires. The current lease, the
    children's counts, the retry policy and the I/O figures are in ``raw``.
    """

    id: str
    type: str
    status: str
    priority: int
    payload: Any
    tags: dict[str, str]
    group: str | None
    dedup_key: str | None
    label: str | None
    attempt: int
    phase: str
    parent_id: str | None
    state: dict[str, Any] | None
    progress: dict[str, Any] | None
    result: Any
    error: Any
    cancel_reason: str | None
    superseded_by: str | None
    supersedes: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime | None
    run_after: datetime | None
    ttl_deadline: datetime | None
    blocked_on: str | None
    fail_fast: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        """Build from the server's JSON (unknown fields stay in ``raw``)."""
        return cls(
            id=data["id"],
            type=data.get("type", ""),
            status=data.get("status", ""),
            priority=int(data.get("priority", 128)),
            payload=data.get("payload"),
            tags=dict(data.get("tags") or {}),
            group=data.get("group"),
            dedup_key=data.get("dedup_key"),
            label=data.get("label"),
            attempt=int(data.get("attempt", 0)),
            phase=data.get("phase", "execute"),
            parent_id=data.get("parent_id"),
            state=data.get("state"),
            progress=data.get("progress"),
            result=data.get("result"),
            error=data.get("error"),
            cancel_reason=data.get("cancel_reason"),
            superseded_by=data.get("superseded_by"),
            supersedes=data.get("supersedes"),
            created_at=_ts(data.get("created_at")),
            started_at=_ts(data.get("started_at")),
            finished_at=_ts(data.get("finished_at")),
            updated_at=_ts(data.get("updated_at")),
            run_after=_ts(data.get("run_after")),
            ttl_deadline=_ts(data.get("ttl_deadline")),
            blocked_on=data.get("blocked_on"),
            fail_fast=bool(data.get("fail_fast", False)),
            raw=data,
        )

    @property
    def terminal(self) -> bool:
        """True once the task can change no more."""
        return self.status in ("completed", "failed", "cancelled", "superseded", "expired")


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """Outcome of one submission.

    ``outcome`` is ``created``, ``superseded`` (``replaced_task_id`` was replaced),
    ``deduplicated`` (``task`` is the live task holding the key) or, in a batch only,
    ``rejected`` (``existing_task_id`` holds the key; ``task`` is None). ``task_id`` and
    ``status`` are that task's (None for ``rejected``); a batch item answered with
    ``Prefer: return=minimal`` carries only them, and ``task`` is None.
    """

    outcome: str
    task: Task | None
    replaced_task_id: str | None = None
    existing_task_id: str | None = None
    task_id: str | None = None
    status: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubmitResult:
        """Build from one submit answer or batch item."""
        raw = data.get("task")
        task = Task.from_json(raw) if isinstance(raw, dict) else None
        return cls(
            outcome=data["outcome"],
            task=task,
            replaced_task_id=data.get("replaced_task_id"),
            existing_task_id=data.get("existing_task_id"),
            # A single submit's answer names the task only inside its record.
            task_id=data.get("task_id") or (task.id if task else None),
            status=data.get("status") or (task.status if task else None),
        )


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of ``GET /tasks``; pass ``next_cursor`` back for the next one."""

    tasks: list[Task]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class AggregateGroup:
    """One group of ``GET /tasks/aggregate``: ``key`` by the ``group_by`` names as asked."""

    key: dict[str, Any]
    count: int
    sum: dict[str, Any]
    min: dict[str, Any]
    max: dict[str, Any]
    avg: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AggregateGroup:
        """Build from one item of the answer's ``groups``."""
        return cls(
            key=dict(data.get("key") or {}),
            count=int(data.get("count", 0)),
            sum=dict(data.get("sum") or {}),
            min=dict(data.get("min") or {}),
            max=dict(data.get("max") or {}),
            avg=dict(data.get("avg") or {}),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One event of ``GET /events``: ``id`` resumes the stream (``Last-Event-ID``)."""

    id: str
    event: str
    data: dict[str, Any]

    @property
    def task_id(self) -> str | None:
        """The task the event is about (None for group events)."""
        value = self.data.get("task_id")
        return str(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class TagKeys:
    """Answer of ``GET /tags``: the distinct tag keys of the retained tasks, sorted."""

    keys: list[str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TagKeys:
        """Build from the server's JSON."""
        return cls(keys=[str(k) for k in data.get("keys") or []])


@dataclass(frozen=True, slots=True)
class TagValue:
    """One value of a tag key and how many tasks carry it."""

    value: str
    count: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TagValue:
        """Build from one item of the answer's ``values``."""
        return cls(value=str(data["value"]), count=int(data.get("count", 0)))


@dataclass(frozen=True, slots=True)
class TagValues:
    """Answer of ``GET /tags/{key}/values``: the key's values, the most common first."""

    values: list[TagValue]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TagValues:
        """Build from the server's JSON."""
        return cls(values=[TagValue.from_json(v) for v in data.get("values") or []])

    @property
    def counts(self) -> dict[str, int]:
        """``{value: count}``, the most common first (what a count by tag wants)."""
        return {v.value: v.count for v in self.values}
