"""Use cases of producers: submit (single and batch), read, list."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from ..config import Settings
from ..schemas.common import MAX_TAGS
from ..schemas.tasks import (
    BatchItemAccepted,
    BatchItemRejected,
    BatchItemResult,
    BatchItemSuperseded,
    BatchSubmitResult,
    SubmitCreated,
    SubmitDeduplicated,
    SubmitResult,
    SubmitSuperseded,
    Task,
    TaskList,
    TaskSubmit,
)
from ..store import queries, tree
from ..store import tasks as store
from ..store.common import Row, dumps
from ..store.db import Database
from ..store.notify import WorkListener
from .access import require_children
from .coalesce import Coalescer
from .errors import (
    Busy,
    DuplicateRejected,
    Forbidden,
    InvalidInput,
    NotFound,
    ParentNotRunning,
    TaskFinished,
    TooLarge,
)
from .ids import TASK_ID_RE, new_task_id, parse_lease_id
from .lifecycle import UNSTARTED, Phase
from .retry import retry_aborted
from .views import task_view

#: Filters of listing, aggregates and bulk cancel (the store's type, for the API layer).
TaskFilter = queries.TaskFilter

# A dedup conflict whose holder finished before we could read it is tried again. Each
# failed round means another submit of the key succeeded; supersedes queue on the key's
# lock, so only skip and reject submits of a free key can make them lose a round. The
# bound only turns a pathological livelock into a 503 the client retries.
_MAX_DEDUP_ROUNDS = 100


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What became of one submission: the task's row (none for a rejected duplicate)."""

    outcome: Literal["created", "superseded", "deduplicated", "rejected"]
    row: Row | None = None
    replaced_task_id: str | None = None
    existing_task_id: str | None = None

    def result(self, *, full: bool = True) -> BatchItemResult:
        """The wire form; ``full=False`` leaves out the task record (id and status stay)."""
        row = self.row
        if row is None:
            assert self.outcome == "rejected" and self.existing_task_id is not None
            return BatchItemRejected(outcome="rejected", existing_task_id=self.existing_task_id)
        task = task_view(row) if full else None
        if self.outcome == "superseded":
            assert self.replaced_task_id is not None
            return BatchItemSuperseded(
                outcome="superseded",
                task_id=row["id"],
                status=row["status"],
                task=task,
                replaced_task_id=self.replaced_task_id,
            )
        assert self.outcome != "rejected"
        return BatchItemAccepted(
            outcome=self.outcome, task_id=row["id"], status=row["status"], task=task
        )


@dataclass(slots=True)
class _Pending:
    index: int
    item: TaskSubmit
    new: store.NewTask


class TaskService:
    """Submitting and reading tasks."""

    def __init__(self, db: Database, settings: Settings, listener: WorkListener) -> None:
        self.db = db
        self.settings = settings
        self.listener = listener
        self._inserter: Coalescer[store.NewTask, Row] = Coalescer(self._insert_rows)

    # -- submitting -----------------------------------------------------------------

    def _prepare(self, items: Sequence[TaskSubmit], batch: bool) -> list[_Pending]:
        """Check every item against the limits before anything is written."""
        prepared = []
        for index, item in enumerate(items):
            where = f"tasks[{index}]." if batch else ""
            payload_json = dumps(item.payload)
            size = len(payload_json.encode())
            if size > self.settings.max_payload_bytes:
                limit = self.settings.max_payload_bytes
                raise TooLarge.at(
                    f"{where}payload",
                    f"larger than {limit} bytes",
                    "too_large",
                    detail=f"{where}payload is {size} bytes encoded; the limit is {limit}",
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
                parent_id=item.parent_id,
                fail_fast=item.fail_fast,
            )
            prepared.append(_Pending(index, item, new))
        return prepared

    async def _apply(
        self, prepared: list[_Pending], *, children_only: bool = False
    ) -> list[_Outcome]:
        """Apply submissions in order, atomically, as if submitted one by one; then wake
        the long polls if any of them is leasable now."""
        if any(p.new.dedup_key or p.new.parent_id for p in prepared):
            results = await self._apply_in_transaction(prepared, children_only=children_only)
        else:
            results = await self._insert_plain(prepared)
        if any(r.row is not None and r.row["status"] == "pending" for r in results):
            self.listener.announce()  # after the commit: see WorkListener.announce
        return results

    async def _insert_plain(self, prepared: list[_Pending]) -> list[_Outcome]:
        """Tasks without a key or a parent: nothing to look up or lock first, so one
        INSERT does it, on its own (no BEGIN/COMMIT round trips). A single submit is
        group-committed with the single submits arriving meanwhile."""
        if len(prepared) == 1:
            rows = [await self._inserter(prepared[0].new)]
        else:
            rows = await self._insert_rows([p.new for p in prepared])
        return [_Outcome("created", row) for row in rows]

    @retry_aborted
    async def _insert_rows(self, new: Sequence[store.NewTask]) -> list[Row]:
        """Insert tasks that have neither a key nor a parent; their rows in order."""
        async with self.db.autocommit() as conn:
            rows = await store.insert_tasks(conn, new)
        return [rows[t.id] for t in new]

    @retry_aborted
    async def _apply_in_transaction(
        self, prepared: list[_Pending], *, children_only: bool
    ) -> list[_Outcome]:
        """Keys or parents: one transaction. Runs of skip/reject items go to the database
        as one statement; a supersede item is applied on its own, in its place."""
        results: dict[int, _Outcome] = {}
        deduplicated: list[str] = []
        async with self.db.transaction() as conn:
            await self._adopt(conn, prepared, children_only=children_only)
            run: list[_Pending] = []
            for p in [*prepared, None]:
                if p is not None and (p.item.on_duplicate != "supersede" or not p.new.dedup_key):
                    run.append(p)
                    continue
                if run:
                    await self._insert(conn, run, results, deduplicated)
                    run = []
                if p is not None:
                    results[p.index] = await self._supersede(conn, p)
            await store.record_deduplicated(conn, deduplicated)
        return [results[i] for i in range(len(prepared))]

    @staticmethod
    async def _adopt(
        conn: AsyncConnection, prepared: list[_Pending], *, children_only: bool
    ) -> None:
        """Children: the parent must be running; they inherit its tags (theirs win).

        A ``parent_lease_id``, when given (always, for a worker's token: ``children_only``),
        must be the parent's current lease: a worker adds children only to the task it
        holds.
        """
        children = [p for p in prepared if p.new.parent_id]
        if not children:
            return
        parents = await tree.lock_parents(conn, sorted({p.new.parent_id or "" for p in children}))
        for p in children:
            where = f"tasks[{p.index}]." if len(prepared) > 1 else ""
            parent = parents.get(p.new.parent_id or "")
            if parent is None:
                raise InvalidInput.at(
                    f"{where}parent_id",
                    "no such task",
                    "not_found",
                    detail=f"no task {p.new.parent_id!r} to be the parent",
                )
            if p.item.parent_lease_id is not None:
                held = parse_lease_id(p.item.parent_lease_id)
                if held != (parent["id"], parent["lease_token"]):
                    raise Forbidden.at(
                        f"{where}parent_lease_id",
                        "not the parent's lease",
                        "lease",
                        detail=f"the lease {p.item.parent_lease_id!r} does not hold task "
                        f"{parent['id']}",
                    )
            if parent["status"] != "running":
                # A worker that learns this way that its task was revoked must be told why
                # (the SDK passes the reason to on_cancel).
                raise ParentNotRunning(
                    f"task {parent['id']} is {parent['status']}: children are added by the "
                    "holder of its lease while it runs",
                    parent_status=parent["status"],
                    cancel_reason=parent["cancel_reason"],
                    superseded_by=parent["superseded_by"],
                )
            tags = {**parent["tags"], **p.new.tags}
            if len(tags) > MAX_TAGS:
                raise InvalidInput.at(
                    f"{where}tags",
                    f"at most {MAX_TAGS} with inherited",
                    "tags",
                    detail=f"with the parent's tags the task would have {len(tags)} tags",
                )
            p.new = replace(p.new, tags=tags)

    @staticmethod
    async def _create(conn: AsyncConnection, new: list[store.NewTask]) -> dict[str, Row]:
        """Insert the tasks whose key is free; a keyed one is then blocked if its key's
        older generation is still being cancelled (lifecycle: submit, block)."""
        inserted = dict(await store.insert_tasks(conn, new))
        keyed = [task_id for task_id, row in inserted.items() if row["dedup_key"] is not None]
        inserted.update(await store.settle(conn, keyed))
        return inserted

    async def _insert(
        self,
        conn: AsyncConnection,
        todo: list[_Pending],
        results: dict[int, _Outcome],
        deduplicated: list[str],
    ) -> None:
        """Insert skip/reject items; answer the held keys from their live holders."""
        for _ in range(_MAX_DEDUP_ROUNDS):
            if not todo:
                return
            inserted = await self._create(conn, [p.new for p in todo])
            conflicts = [p for p in todo if p.new.id not in inserted]
            for p in todo:
                if p.new.id in inserted:
                    results[p.index] = _Outcome("created", inserted[p.new.id])
            keys = sorted({(p.new.type, p.new.dedup_key or "") for p in conflicts})
            holders = await store.live_holders(conn, keys)
            todo = []
            for p in conflicts:
                holder = holders.get((p.new.type, p.new.dedup_key or ""))
                if holder is None:
                    todo.append(p)  # the holder finished meanwhile: insert again
                elif p.item.on_duplicate == "reject":
                    results[p.index] = _Outcome("rejected", existing_task_id=holder["id"])
                else:
                    deduplicated.append(holder["id"])
                    results[p.index] = _Outcome("deduplicated", holder)
        raise Busy("a dedup key kept changing hands; try again")

    async def _supersede(self, conn: AsyncConnection, p: _Pending) -> _Outcome:
        """Latest value wins: retire the key's live holder and put this task in its place.

        Supersedes of one key queue on the key's lock, so each finds the holder the one
        before left. The holder gets the lifecycle's cancel event (reason superseded): one
        that never ran in this phase ends at once and the new task takes its queue position;
        a running one is revoked; one whose execute phase ended awaits its cancel-phase
        lease. The new task is blocked while anything of the key's older generations is
        still being cancelled, descendants included (see store.tasks.settle).
        """
        new = p.new
        for _ in range(_MAX_DEDUP_ROUNDS):
            holder = await tree.retire_holder(conn, new.type, new.dedup_key or "", new.id)
            if holder is None:
                inserted = await self._create(conn, [new])
                if new.id in inserted:
                    return _Outcome("created", inserted[new.id])
                continue  # a skip or reject submit took the free key first: supersede it
            unstarted = holder["status"] in UNSTARTED and holder["phase"] == Phase.EXECUTE
            # The state handoff follows only predecessors that ran or hold state, so a long
            # run of never-leased supersedes costs the lease nothing (store.leases).
            may_hold_state = holder["has_state"] or holder["leased"] or not unstarted
            replacement = replace(
                new,
                seq=holder["seq"] if unstarted else None,
                state_from=holder["id"] if may_hold_state else holder["state_from"],
                supersedes=holder["id"],
            )
            inserted = await self._create(conn, [replacement])
            row = inserted[new.id]  # the key is ours: we retired its holder under its lock
            return _Outcome("superseded", row, replaced_task_id=holder["id"])
        raise Busy("a dedup key kept changing hands; try again")

    async def submit(self, item: TaskSubmit, *, children_only: bool = False) -> SubmitResult:
        """Submit one task. Raises :class:`DuplicateRejected` for a rejected duplicate.

        ``children_only`` (a worker's token): only a child of a running task is accepted.
        """
        if children_only:
            require_children([item], batch=False)
        (result,) = await self._apply(
            self._prepare([item], batch=False), children_only=children_only
        )
        if result.outcome == "rejected":
            raise DuplicateRejected(
                f"a live task of type {item.type!r} holds dedup key {item.dedup_key!r}",
                existing_task_id=result.existing_task_id,
            )
        assert result.row is not None
        task = task_view(result.row)
        if result.outcome == "superseded":
            assert result.replaced_task_id is not None
            return SubmitSuperseded(
                outcome="superseded", task=task, replaced_task_id=result.replaced_task_id
            )
        if result.outcome == "deduplicated":
            return SubmitDeduplicated(outcome="deduplicated", task=task)
        return SubmitCreated(outcome="created", task=task)

    async def submit_batch(
        self, items: Sequence[TaskSubmit], *, children_only: bool = False, full: bool = True
    ) -> BatchSubmitResult:
        """Validate all items, then apply them in order in one transaction. ``full=False``
        answers each task's id and status without its whole record."""
        if len(items) > self.settings.max_batch_size:
            limit = self.settings.max_batch_size
            raise InvalidInput.at(
                "tasks",
                f"at most {limit} items",
                "too_long",
                detail=f"a batch holds at most {limit} tasks",
            )
        if children_only:
            require_children(items, batch=True)
        prepared = self._prepare(items, batch=True)
        outcomes = await self._apply(prepared, children_only=children_only)
        return BatchSubmitResult(results=[o.result(full=full) for o in outcomes])

    # -- reading --------------------------------------------------------------------

    @retry_aborted
    async def cancel(self, task_id: str, *, force: bool = False) -> Task:
        """Cancel a task and its descendants: unleased ones end now, leased ones are revoked
        (their workers run on_cancel), one whose execute phase ended runs its on_cancel in a
        cancel-phase lease. ``force`` ends the task and every descendant at once instead.

        Cancelling a task that is already cancelled (or, without ``force``, being
        cancelled) changes nothing; a task that finished otherwise answers
        :class:`TaskFinished`.
        """
        if not TASK_ID_RE.match(task_id):
            raise NotFound(f"no task {task_id!r}")
        async with self.db.transaction() as conn:
            if force:
                changed = task_id in await tree.force(conn, task_id)
            else:
                changed = task_id in await tree.cancel(conn, [task_id])
            row = await store.get_task(conn, task_id)
            if row is None:
                raise NotFound(f"no task {task_id!r}")
            if not changed and row["status"] not in ("cancelled", "cancelling"):
                raise TaskFinished(
                    f"task {task_id} is already {row['status']}", task_status=row["status"]
                )
        return task_view(row)

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
        async with self.db.transaction(custom_plans=True) as conn:
            rows = await queries.list_tasks(conn, flt, after, limit + 1)
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
        raise InvalidInput.at(
            "cursor", "invalid cursor", detail="cursor is not one this server issued"
        )
    return value
