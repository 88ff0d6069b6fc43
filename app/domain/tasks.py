"""Use cases of producers: submit (single and batch), read, list."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Settings
from ..schemas.tasks import (
    BatchItemResult,
    BatchSubmitResult,
    SubmitResult,
    Task,
    TaskList,
    TaskSubmit,
)
from ..store import tasks as store
from ..store.db import Database
from .errors import DuplicateRejected, InvalidInput, NotFound, TooLarge
from .ids import TASK_ID_RE, new_task_id
from .views import task_view

#: Filters of ``GET /tasks`` (the store's type, re-exported for the API layer).
TaskFilter = store.TaskFilter

# A dedup conflict whose holder finished before we could read it is retried; under any
# sane load one retry suffices, the bound only guards against a pathological livelock.
_MAX_DEDUP_ROUNDS = 10


@dataclass(slots=True)
class _Pending:
    index: int
    item: TaskSubmit
    new: store.NewTask


class TaskService:
    """Submitting and reading tasks."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    # -- submitting -----------------------------------------------------------------

    def _prepare(self, items: Sequence[TaskSubmit], batch: bool) -> list[_Pending]:
        """Check every item against the limits before anything is written."""
        prepared = []
        for index, item in enumerate(items):
            where = f"tasks[{index}]." if batch else ""
            if item.on_duplicate == "supersede":
                raise InvalidInput(
                    "on_duplicate=supersede is not available in this release",
                    errors=[
                        {
                            "field": f"{where}on_duplicate",
                            "message": "supersede is not available yet; use skip or reject",
                            "type": "unsupported",
                        }
                    ],
                )
            payload_json = store.dumps(item.payload)
            size = len(payload_json.encode())
            if size > self.settings.max_payload_bytes:
                raise TooLarge(
                    f"{where}payload is {size} bytes encoded; the limit is "
                    f"{self.settings.max_payload_bytes}",
                    errors=[
                        {
                            "field": f"{where}payload",
                            "message": f"larger than {self.settings.max_payload_bytes} bytes",
                            "type": "too_large",
                        }
                    ],
                )
            retry = item.retry
            new = store.NewTask(
                id=new_task_id(),
                type=item.type,
                priority=item.priority,
                payload_json=payload_json,
                dedup_key=item.dedup_key,
                group_name=item.group,
                label=item.label,
                tags=item.tags,
                expected_io=item.expected_io.as_tuple(),
                max_attempts=retry.max_attempts,
                backoff=retry.backoff,
                backoff_base_seconds=retry.base_seconds,
                backoff_max_seconds=retry.max_seconds,
                run_after=item.run_after,
                ttl_seconds=item.ttl_seconds,
                parent_id=None,
                fail_fast=True,
            )
            prepared.append(_Pending(index, item, new))
        return prepared

    async def _apply(self, prepared: list[_Pending]) -> list[BatchItemResult]:
        """Apply submissions in order in one transaction, as if submitted one by one."""
        results: dict[int, BatchItemResult] = {}
        deduplicated: list[str] = []
        async with self.db.transaction() as conn:
            todo = prepared
            for _ in range(_MAX_DEDUP_ROUNDS):
                if not todo:
                    break
                inserted = await store.insert_tasks(conn, [p.new for p in todo])
                conflicts = [p for p in todo if p.new.id not in inserted]
                for p in todo:
                    if p.new.id in inserted:
                        results[p.index] = BatchItemResult(
                            outcome="created", task=task_view(inserted[p.new.id])
                        )
                keys = sorted({(p.new.type, p.new.dedup_key or "") for p in conflicts})
                holders = await store.live_holders(conn, keys)
                todo = []
                for p in conflicts:
                    holder = holders.get((p.new.type, p.new.dedup_key or ""))
                    if holder is None:
                        todo.append(p)  # the holder finished meanwhile: insert again
                    elif p.item.on_duplicate == "reject":
                        results[p.index] = BatchItemResult(
                            outcome="rejected", existing_task_id=holder["id"]
                        )
                    else:
                        deduplicated.append(holder["id"])
                        results[p.index] = BatchItemResult(
                            outcome="deduplicated", task=task_view(holder)
                        )
            else:
                raise RuntimeError("dedup key kept changing hands; giving up")  # pragma: no cover
            await store.record_task_events(conn, "task.deduplicated", deduplicated)
        return [results[i] for i in range(len(prepared))]

    async def submit(self, item: TaskSubmit) -> SubmitResult:
        """Submit one task. Raises :class:`DuplicateRejected` for a rejected duplicate."""
        (result,) = await self._apply(self._prepare([item], batch=False))
        if result.outcome == "rejected":
            raise DuplicateRejected(
                f"a live task of type {item.type!r} holds dedup key {item.dedup_key!r}",
                existing_task_id=result.existing_task_id,
            )
        assert result.task is not None
        return SubmitResult(
            outcome=result.outcome,
            task=result.task,
            replaced_task_id=result.replaced_task_id,
        )

    async def submit_batch(self, items: Sequence[TaskSubmit]) -> BatchSubmitResult:
        """Validate all items, then apply them in order in one transaction."""
        if len(items) > self.settings.max_batch_size:
            raise InvalidInput(
                f"a batch holds at most {self.settings.max_batch_size} tasks",
                errors=[
                    {
                        "field": "tasks",
                        "message": f"at most {self.settings.max_batch_size} items",
                        "type": "too_long",
                    }
                ],
            )
        return BatchSubmitResult(results=await self._apply(self._prepare(items, batch=True)))

    # -- reading --------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        """One task by id, whatever its status."""
        row = None
        if TASK_ID_RE.match(task_id):
            async with self.db.transaction() as conn:
                row = await store.get_task(conn, task_id)
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        return task_view(row)

    async def list(self, flt: TaskFilter, cursor: str | None, limit: int) -> TaskList:
        """A page of tasks in id order; ``cursor`` continues after the previous page."""
        after = _decode_cursor(cursor) if cursor else None
        async with self.db.transaction() as conn:
            rows = await store.list_tasks(conn, flt, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1]["id"]) if more and rows else None
        return TaskList(tasks=[task_view(r) for r in rows], next_cursor=next_cursor)


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    if not TASK_ID_RE.match(value) or _encode_cursor(value) != cursor:  # only our own form
        raise InvalidInput(
            "cursor is not one this server issued",
            errors=[{"field": "cursor", "message": "invalid cursor", "type": "value_error"}],
        )
    return value
