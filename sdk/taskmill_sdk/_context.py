"""What a handler receives (:class:`TaskContext`) and the exceptions it may raise."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import Conflict
from ._models import SubmitResult, Task


class PermanentError(Exception):
    """Raise from a handler to fail the task without retrying it."""


class Retry(Exception):
    """Raise from a handler to fail this attempt and retry after ``after`` seconds.

    Without ``after`` the task's own backoff applies. When no attempts are left the task
    fails as with any other error.
    """

    def __init__(self, message: str = "retry requested", *, after: float | None = None):
        super().__init__(message)
        self.after = after


class Release(Exception):
    """Raise from a handler to give the task back unfinished (the attempt is not counted).

    Useful when :attr:`TaskContext.stopping` turns true during a long piece of work.
    """


class TaskCancelled(Exception):
    """Raised by :meth:`TaskContext.raise_if_cancelled` once the server revoked the lease."""


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Why the server revoked the lease: ``reason`` is ``superseded`` or ``cancelled``.

    ``superseded_by`` is the id of the task that replaced this one (for ``superseded``).
    """

    reason: str
    superseded_by: str | None = None


def _cancel_request(data: Mapping[str, Any] | None, reason_key: str = "reason") -> CancelRequest:
    # The server's reason, from a cancel directive (a lease's or a heartbeat's ``cancel``)
    # or, with reason_key="cancel_reason", from a 409 problem body; "cancelled" if absent.
    data = data or {}
    by = data.get("superseded_by")
    return CancelRequest(str(data.get(reason_key) or "cancelled"), str(by) if by else None)


class TaskContext:
    """One leased task as its handler sees it.

    Read: ``task_id``, ``type``, ``payload``, ``tags``, ``attempt``, ``max_attempts``,
    ``phase`` (``execute``, ``finalize`` or ``cancel``), ``state`` (the task's state map),
    ``previous_state`` (the state of the task this one superseded), ``lease_id``.

    Report: :meth:`set_progress` and :meth:`set_state` / :meth:`update_state` are sent with
    the next heartbeat (or at once with :meth:`flush`) and with the completion;
    :meth:`set_actual_io` goes with the completion.

    Cancellation: when the server revokes the lease (the task was superseded or
    cancelled), :attr:`cancelled` turns true, an async handler is cancelled
    (``asyncio.CancelledError`` at its next ``await``), a sync handler should check
    :attr:`cancelled` or call :meth:`raise_if_cancelled`; then the ``on_cancel`` hook runs
    and the cancel is acknowledged. No result is ever reported for a revoked lease. The
    reason is the server's, whichever call told the worker (a heartbeat, a refused
    completion or failure, a refused :meth:`spawn`).

    A task cancelled or superseded after its execute phase had ended (it was waiting for
    its children, or queued for its finalize) is leased once more in the ``cancel``
    phase: only its ``on_cancel`` hook runs, with :attr:`cancelled` true from the start
    and :attr:`state` as the task saved it; then the cancel is acknowledged.

    Children: :meth:`spawn` submits a child task (``parent_id`` = this task).

    Methods whose names end in ``_sync`` are for sync handlers, which run in threads.
    """

    def __init__(
        self,
        lease: Mapping[str, Any],
        *,
        worker_id: str,
        loop: asyncio.AbstractEventLoop,
        submit: Callable[[dict[str, Any]], Awaitable[SubmitResult]],
        list_children: Callable[[str], Awaitable[list[Task]]],
    ) -> None:
        task = lease["task"]
        self.lease_id: str = lease["lease_id"]
        self.phase: str = lease.get("phase", "execute")
        self.task_id: str = task["id"]
        self.type: str = task["type"]
        self.payload: Any = task.get("payload")
        self.tags: dict[str, str] = dict(task.get("tags") or {})
        self.priority: int = int(task.get("priority", 128))
        self.group: str | None = task.get("group")
        self.dedup_key: str | None = task.get("dedup_key")
        self.label: str | None = task.get("label")
        self.attempt: int = int(task.get("attempt", 1))
        self.max_attempts: int = int(task.get("max_attempts", 1))
        self.previous_state: dict[str, Any] | None = task.get("previous_state")
        self.worker_id = worker_id
        self.raw: Mapping[str, Any] = lease
        self._state: dict[str, Any] = dict(task.get("state") or {})
        self._loop = loop
        self._submit = submit
        self._list_children = list_children
        self._lock = threading.Lock()
        self._state_version = 0
        self._state_sent = 0
        self._progress: dict[str, Any] | None = None
        self._progress_version = 0
        self._progress_sent = 0
        self._actual_io: dict[str, int] | None = None
        self._cancel: CancelRequest | None = None
        self._cancel_flag = threading.Event()
        self._cancel_event = asyncio.Event()
        self._stopping = threading.Event()
        self._flush = asyncio.Event()
        self._beats = 0
        self._beat = asyncio.Condition()
        # Set when the server ended the task under this lease (an operator's force cancel):
        # nothing may be reported or acknowledged any more.
        self._forced = asyncio.Event()
        if self.phase == "cancel" or lease.get("cancel"):
            self._request_cancel(_cancel_request(lease.get("cancel")))

    # -- reading -------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """A copy of the task's state map as this worker last set it."""
        with self._lock:
            return copy.deepcopy(self._state)

    @property
    def cancelled(self) -> bool:
        """True once the server asked for this task to stop (superseded or cancelled)."""
        return self._cancel_flag.is_set()

    @property
    def cancel_request(self) -> CancelRequest | None:
        """The server's reason, once :attr:`cancelled` is true."""
        return self._cancel

    @property
    def stopping(self) -> bool:
        """True once the worker is shutting down (finish soon, or raise :class:`Release`)."""
        return self._stopping.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` if the server revoked the lease."""
        if self.cancelled:
            raise TaskCancelled(self._cancel.reason if self._cancel else "cancelled")

    async def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Wait until the lease is revoked (True) or ``timeout`` passes (False)."""
        try:
            await asyncio.wait_for(self._cancel_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- reporting -----------------------------------------------------------------

    def set_progress(self, fraction: float | None = None, message: str | None = None) -> None:
        """Report progress (``fraction`` in [0, 1]); sent with the next heartbeat."""
        if fraction is not None and not 0 <= fraction <= 1:
            raise ValueError("fraction must be within [0, 1]")
        progress = {
            k: v for k, v in (("fraction", fraction), ("message", message)) if v is not None
        }
        with self._lock:
            self._progress = progress
            self._progress_version += 1

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Replace the state map; sent with the next heartbeat and with the completion."""
        with self._lock:
            self._state = copy.deepcopy(dict(state))
            self._state_version += 1

    def update_state(self, **items: Any) -> None:
        """Shallow-merge ``items`` into the state map (like ``dict.update``)."""
        with self._lock:
            self._state.update(copy.deepcopy(items))
            self._state_version += 1

    def set_actual_io(
        self,
        *,
        read_bytes: int = 0,
        write_bytes: int = 0,
        net_rx_bytes: int = 0,
        net_tx_bytes: int = 0,
    ) -> None:
        """Bytes really moved; reported with the completion."""
        self._actual_io = {
            "read_bytes": read_bytes,
            "write_bytes": write_bytes,
            "net_rx_bytes": net_rx_bytes,
            "net_tx_bytes": net_tx_bytes,
        }

    async def flush(self) -> None:
        """Send progress and state now (one heartbeat) and wait for the answer."""
        async with self._beat:
            target = self._beats + 1
            self._flush.set()
            await self._beat.wait_for(lambda: self._beats >= target)

    def flush_sync(self) -> None:
        """:meth:`flush` for sync handlers."""
        asyncio.run_coroutine_threadsafe(self.flush(), self._loop).result()

    # -- children ------------------------------------------------------------------

    async def spawn(self, type: str, payload: Any = None, **fields: Any) -> SubmitResult:
        """Submit a child task (it inherits this task's tags; its own keys win).

        ``fields`` are those of :func:`taskmill_sdk.task_spec`. When this task completes
        while children are live it waits for them, then is leased again in the
        ``finalize`` phase (the ``finalize`` hook runs).

        Raises :class:`~taskmill_sdk.Conflict` (``parent-not-running``) once this task was
        revoked; :attr:`cancelled` is then already true, with the server's reason.
        """
        from ._client import task_spec

        # The lease id proves this worker holds the parent (required with a worker token).
        spec = task_spec(
            type, payload, parent_id=self.task_id, parent_lease_id=self.lease_id, **fields
        )
        try:
            return await self._submit(spec)
        except Conflict as exc:
            if exc.code == "parent-not-running" and exc.problem.get("parent_status") == (
                "cancelling"
            ):
                self._request_cancel(_cancel_request(exc.problem, "cancel_reason"))
            raise

    def spawn_sync(self, type: str, payload: Any = None, **fields: Any) -> SubmitResult:
        """:meth:`spawn` for sync handlers."""
        future = asyncio.run_coroutine_threadsafe(self.spawn(type, payload, **fields), self._loop)
        return future.result()

    async def children(self) -> list[Task]:
        """This task's children (e.g. in ``finalize``, to collect their results)."""
        return await self._list_children(self.task_id)

    def children_sync(self) -> list[Task]:
        """:meth:`children` for sync handlers."""
        return asyncio.run_coroutine_threadsafe(self.children(), self._loop).result()

    # -- used by the worker --------------------------------------------------------

    def _heartbeat_body(self) -> tuple[dict[str, Any], int, int]:
        with self._lock:
            body: dict[str, Any] = {}
            if self._progress_version > self._progress_sent and self._progress is not None:
                body["progress"] = dict(self._progress)
            if self._state_version > self._state_sent:
                body["state"] = copy.deepcopy(self._state)
            return body, self._progress_version, self._state_version

    def _sent(self, progress_version: int, state_version: int) -> None:
        with self._lock:
            self._progress_sent = max(self._progress_sent, progress_version)
            self._state_sent = max(self._state_sent, state_version)

    def _unsent_state(self) -> dict[str, Any] | None:
        with self._lock:
            if self._state_version > self._state_sent:
                return copy.deepcopy(self._state)
            return None

    async def _beat_done(self) -> None:
        async with self._beat:
            self._beats += 1
            self._beat.notify_all()

    async def _close_beats(self) -> None:
        # No more heartbeats for this lease: release anyone waiting in flush().
        async with self._beat:
            self._beats = 1 << 62
            self._beat.notify_all()

    def _request_cancel(self, request: CancelRequest) -> None:
        if self._cancel is None:
            self._cancel = request
        self._cancel_flag.set()
        self._cancel_event.set()
