"""Use cases of workers: lease (long poll), heartbeat, complete, fail, release, state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..config import Settings
from ..schemas.leases import (
    Complete,
    CompleteBatch,
    CompleteBatchResult,
    CompletedItem,
    CompleteItemResult,
    Fail,
    Heartbeat,
    HeartbeatResult,
    Lease,
    LeaseRequest,
    LeaseResponse,
    RefusedItem,
    StatePatch,
)
from ..schemas.problems import Problem
from ..schemas.tasks import Task
from ..store import leases as store
from ..store.common import Row, dumps
from ..store.db import AnyConnection, Database
from ..store.notify import WorkListener
from .coalesce import Coalescer
from .errors import DomainError, InvalidInput, LeaseConflict, LeaseGone, NotFound, TooLarge
from .ids import parse_lease_id
from .retry import retry_aborted
from .views import cancel_directive, lease_view, task_view


class LeaseService:
    """The lease protocol of SPEC §5."""

    #: Called with the rows of every grant, after it committed (metrics, see domain.metrics).
    on_grant: Callable[[Sequence[Row]], None] | None = None

    def __init__(self, db: Database, settings: Settings, listener: WorkListener) -> None:
        self.db = db
        self.settings = settings
        self.listener = listener
        self._completer: Coalescer[store.Completion, Row] = Coalescer(self._complete_items)

    # -- leasing --------------------------------------------------------------------

    async def lease(
        self, req: LeaseRequest, gone: Callable[[], Awaitable[bool]] | None = None
    ) -> LeaseResponse:
        """Grant up to ``max_tasks`` leases, waiting up to ``wait_seconds`` for work.

        ``gone`` tells whether the caller hung up: a long poll whose client left stops
        before it claims, instead of granting leases to nobody (they would only expire,
        each costing its task an attempt).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(req.wait_seconds, self.settings.max_wait_seconds)
        lease_seconds = min(req.lease_seconds, self.settings.max_lease_seconds)
        leases: list[Lease] = []
        while True:
            armed = self.listener.arm()
            got, trimmed = await self._claim_once(req, lease_seconds, req.max_tasks - len(leases))
            leases += got
            if trimmed and len(leases) < req.max_tasks:
                # A group filled up under us: look again for the rest, it is now excluded
                # (a full group must not shrink the grant: no head-of-line blocking).
                continue
            if leases:
                leases.sort(key=lambda x: x.task.priority)  # stable: enqueue order kept
                return LeaseResponse(leases=leases)
            remaining = deadline - loop.time()
            if remaining <= 0 or self.listener.stopping:
                return LeaseResponse(leases=[])
            await self.listener.wait(armed, min(remaining, self.settings.poll_fallback_seconds))
            if gone is not None and await gone():
                return LeaseResponse(leases=[])

    @retry_aborted
    async def _claim_once(
        self, req: LeaseRequest, lease_seconds: float, n: int
    ) -> tuple[list[Lease], bool]:
        # The claim is one statement: run on its own, it costs one round trip.
        async with self.db.autocommit() as conn:
            claim = await store.claim(
                conn,
                worker=req.worker_id,
                n=n,
                lease_seconds=lease_seconds,
                types=req.types,
                groups=req.groups,
            )
        granted = list(claim.granted)
        trimmed = False
        if claim.limited:
            admitted, trimmed = await self._admit(req, lease_seconds, claim.limited)
            granted += admitted
            granted.sort(key=lambda r: (r["priority"], r["seq"]))
        if self.on_grant is not None and granted:
            self.on_grant(granted)
        return [lease_view(r) for r in granted], trimmed

    async def _admit(
        self, req: LeaseRequest, lease_seconds: float, limited: Sequence[tuple[str, str, int]]
    ) -> tuple[list[Row], bool]:
        """Grant candidates of concurrency-limited groups while their groups have free
        slots, counted and granted under the groups' locks; True if some did not fit."""
        async with self.db.transaction() as conn:
            free = await store.lock_groups_and_count(conn, [g for _, g, _ in limited])
            admit = []
            trimmed = False
            for task_id, group, _ in limited:
                slots = free.get(group)
                if slots is None or slots > 0:
                    admit.append(task_id)
                    if slots is not None:
                        free[group] = slots - 1
                else:
                    trimmed = True
            granted = await store.grant(
                conn, admit, worker=req.worker_id, lease_seconds=lease_seconds
            )
        return granted, trimmed

    # -- calls on a held lease ------------------------------------------------------

    @staticmethod
    def _parse(lease_id: str) -> tuple[str, str]:
        parsed = parse_lease_id(lease_id)
        if parsed is None:
            raise NotFound(f"no lease {lease_id!r}")
        return parsed

    @staticmethod
    async def _explain(conn: AnyConnection, task_id: str, token: str) -> DomainError:
        """Why a fenced call matched nothing."""
        row = await store.lease_standing(conn, task_id)
        if row is None:
            return NotFound("no such lease")
        if row["lease_token"] != token:
            return LeaseGone("the lease expired or was replaced by a newer lease")
        status = row["status"]
        if status == "running" and not row["unexpired"]:
            return LeaseGone("the lease expired")
        if status == "cancelling":
            # The worker learns of the revoke here (a report raced it): tell it why, as a
            # heartbeat would, so its on_cancel gets the server's reason.
            return LeaseConflict(
                "the lease was revoked: acknowledge the cancel with POST /leases/{id}/cancelled",
                task_status=status,
                cancel_reason=row["cancel_reason"],
                superseded_by=row["superseded_by"],
            )
        return LeaseConflict(
            f"the lease has ended: the task is {status}",
            task_status=status,
            cancel_reason=row["cancel_reason"],
            superseded_by=row["superseded_by"],
        )

    def _check_state(self, state: Any, field: str) -> None:
        if state is not None:
            size = len(dumps(state).encode())
            if size > self.settings.max_state_bytes:
                limit = self.settings.max_state_bytes
                raise TooLarge.at(
                    field,
                    f"larger than {limit} bytes",
                    "too_large",
                    detail=f"state is {size} bytes encoded; the limit is {limit}",
                )

    @retry_aborted
    async def heartbeat(self, lease_id: str, body: Heartbeat) -> HeartbeatResult:
        """Extend the lease; the answer says whether the server wants the task cancelled."""
        task_id, token = self._parse(lease_id)
        self._check_state(body.state, "state")
        extend = None
        if body.extend_seconds is not None:
            extend = min(body.extend_seconds, self.settings.max_lease_seconds)
        async with self.db.autocommit() as conn:  # one statement: one round trip
            row = await store.heartbeat(
                conn,
                task_id,
                token,
                extend_seconds=extend,
                progress=body.progress.model_dump(exclude_none=True) if body.progress else None,
                state=body.state,
                has_state=body.state is not None,
            )
            if row is None:
                raise await self._explain(conn, task_id, token)
        return HeartbeatResult(expires_at=row["lease_expires_at"], cancel=cancel_directive(row))

    @retry_aborted
    async def set_state(self, lease_id: str, body: StatePatch) -> Task:
        """Merge into or replace the state map."""
        task_id, token = self._parse(lease_id)
        self._check_state(body.state, "state")
        async with self.db.transaction() as conn:
            row = await store.set_state(
                conn, task_id, token, body.state, merge=body.mode == "merge"
            )
            if row is None:
                raise await self._explain(conn, task_id, token)
            if body.mode == "merge":
                # The merged map must fit too; raising here rolls the merge back.
                self._check_state(row["state"], "state")
        return task_view(row)

    @staticmethod
    def _completion(task_id: str, token: str, body: Complete) -> store.Completion:
        return store.Completion(
            task_id=task_id,
            token=token,
            result=body.result,
            state=body.state,
            has_state=body.state is not None,
            actual_io=body.actual_io.as_tuple() if body.actual_io else None,
        )

    async def complete(self, lease_id: str, body: Complete) -> Task:
        """Report success (group-committed with the completions arriving meanwhile)."""
        task_id, token = self._parse(lease_id)
        self._check_state(body.state, "state")
        # A refused completion raises its own explanation (404/409/410) here.
        return task_view(await self._completer(self._completion(task_id, token, body)))

    @retry_aborted
    async def _complete_items(self, items: Sequence[store.Completion]) -> list[Row | DomainError]:
        """Complete the items in one statement; each answers its row, or why not.

        A lease named again after its first item is answered as if sent after it: it is
        not completed twice (the first wins; the repeat is explained, as 409).
        """
        firsts: dict[tuple[str, str], int] = {}
        for i, c in enumerate(items):
            firsts.setdefault((c.task_id, c.token), i)
        answers: list[Row | DomainError] = []
        # One statement completes them all; the explanations after it only read.
        async with self.db.autocommit() as conn:
            rows = await store.complete(conn, [items[i] for i in firsts.values()])
            for i, c in enumerate(items):
                row = rows.get(c.task_id)
                first = firsts[(c.task_id, c.token)] == i
                # Rows are by task: another item's token may have completed this task.
                if first and row is not None and str(row["lease_token"]) == c.token:
                    answers.append(row)
                else:
                    answers.append(await self._explain(conn, c.task_id, c.token))
        return answers

    async def complete_batch(
        self, body: CompleteBatch, *, full: bool = True
    ) -> CompleteBatchResult:
        """Complete many leases in one statement; each item answers on its own.
        ``full=False`` answers each task's status without its whole record."""
        limit = self.settings.max_batch_size
        if len(body.items) > limit:  # the same bound as a submit batch
            raise InvalidInput.at(
                "items",
                f"at most {limit} items",
                "too_long",
                detail=f"a batch holds at most {limit} items",
            )
        answers: dict[int, Row | DomainError] = {}
        items: dict[int, store.Completion] = {}
        for i, item in enumerate(body.items):
            parsed = parse_lease_id(item.lease_id)
            if parsed is None:
                answers[i] = NotFound(f"no lease {item.lease_id!r}")
                continue
            try:
                self._check_state(item.state, f"items[{i}].state")
            except TooLarge as exc:
                answers[i] = exc
                continue
            items[i] = self._completion(*parsed, item)
        if items:
            answers.update(
                zip(items, await self._complete_items(list(items.values())), strict=True)
            )
        results: list[CompleteItemResult] = []
        for i, item in enumerate(body.items):
            answer = answers[i]
            if isinstance(answer, DomainError):
                problem = Problem.model_validate(answer.as_problem())
                results.append(RefusedItem(lease_id=item.lease_id, ok=False, error=problem))
            else:
                task = task_view(answer) if full else None
                results.append(
                    CompletedItem(
                        lease_id=item.lease_id, ok=True, status=answer["status"], task=task
                    )
                )
        return CompleteBatchResult(results=results)

    @retry_aborted
    async def fail(self, lease_id: str, body: Fail) -> Task:
        """Report failure: retried with backoff while attempts remain, else failed."""
        task_id, token = self._parse(lease_id)
        error = body.error if isinstance(body.error, str) else body.error.model_dump()
        async with self.db.transaction() as conn:
            row = await store.fail(
                conn,
                task_id,
                token,
                error=error,
                retryable=body.retryable,
                retry_after_seconds=body.retry_after_seconds,
            )
            if row is None:
                raise await self._explain(conn, task_id, token)
        return task_view(row)

    @retry_aborted
    async def acknowledge_cancel(self, lease_id: str) -> Task:
        """The worker ran its on_cancel hook: the revoked task ends (cancelled/superseded)."""
        task_id, token = self._parse(lease_id)
        async with self.db.transaction() as conn:
            row = await store.acknowledge_cancel(conn, task_id, token)
            if row is None:
                standing = await store.lease_standing(conn, task_id)
                if (
                    standing is not None
                    and standing["lease_token"] == token
                    and standing["status"] == "running"
                ):
                    raise LeaseConflict("no cancel was requested for this lease")
                raise await self._explain(conn, task_id, token)
        return task_view(row)

    @retry_aborted
    async def release(self, lease_id: str) -> Task:
        """Give the task back unfinished; its attempt is not counted."""
        task_id, token = self._parse(lease_id)
        async with self.db.transaction() as conn:
            row = await store.release(conn, task_id, token)
            if row is None:
                raise await self._explain(conn, task_id, token)
        return task_view(row)
