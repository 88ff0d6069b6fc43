"""The worker: lease, run handlers concurrently, heartbeat, report, stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import secrets
import signal
import socket
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx

from ._client import AsyncClient, submit_call
from ._context import (
    CancelRequest,
    PermanentError,
    Release,
    Retry,
    TaskCancelled,
    TaskContext,
    _cancel_request,
)
from ._errors import (
    LeaseConflict,
    LeaseGone,
    LeaseLost,
    NotFound,
    ServerError,
    TaskmillError,
    Unavailable,
)
from ._http import DEFAULT_URL, AsyncHTTP, Call, RetryPolicy, client_options, ignore, segment
from ._models import Task

log = logging.getLogger("taskmill_sdk.worker")

#: A handler takes the context and returns the task's result (any JSON), sync or async.
Handler = Callable[[TaskContext], Any]
H = TypeVar("H", bound=Handler)
T = TypeVar("T")

_MAX_TRACEBACK = 4000
#: What a lease call answers (409, ``task_status``) once the task was ended by force.
_FORCE_ENDED = ("cancelled", "superseded")
#: After the shutdown deadline, how long the runners get for their last words (a release
#: of what they hold, one try each) before they are cancelled.
_LAST_WORDS_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Registration:
    """The functions registered for one task type (see :meth:`Worker.register`)."""

    handler: Handler
    on_cancel: Handler | None = None
    finalize: Handler | None = None


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (an object with an async __call__)
    )


def _leases(body: Any) -> list[dict[str, Any]]:
    leases: list[dict[str, Any]] = body["leases"]
    return leases


def _lease_request(body: dict[str, Any]) -> Call[list[dict[str, Any]]]:
    # POST /leases: a long poll for up to body["max_tasks"] leases.
    return Call("POST", "/leases", _leases, json=body)


def _task_status(body: Any) -> str | None:
    status = body.get("status")
    return str(status) if status is not None else None


def _cancel_directive(body: Any) -> CancelRequest | None:
    # A heartbeat's answer: the server's cancel directive, if it revoked the lease.
    cancel = body.get("cancel")
    return _cancel_request(cancel) if cancel else None


def _on_lease(lease_id: str, action: str, parse: Callable[[Any], T], json: Any = None) -> Call[T]:
    # A call of the lease protocol; each is safe to repeat (the lease id fences it).
    return Call("POST", f"/leases/{segment(lease_id)}/{action}", parse, json=json)


def _error_body(exc: BaseException) -> dict[str, Any]:
    trace = "".join(traceback.format_exception(exc))[-_MAX_TRACEBACK:]
    return {
        "message": str(exc) or type(exc).__name__,
        "type": type(exc).__name__,
        "traceback": trace,
    }


class Worker:
    """Runs handlers for leased tasks.

    ::

        worker = Worker("http://127.0.0.1:8000", concurrency=8)

        @worker.handler("resize", on_cancel=cleanup)
        async def resize(ctx: TaskContext) -> dict:
            ...

        worker.run()   # blocks; SIGTERM/SIGINT stop it gracefully

    Args:
        url: the service (default ``$TASKMILL_URL`` or ``http://127.0.0.1:8000``).
        token: bearer token with the ``worker`` role (default ``$TASKMILL_TOKEN``).
        worker_id: reported with each lease (default ``host:pid:random``).
        concurrency: handlers running at once; the worker leases in batches up to the
            free slots.
        lease_seconds: lease length; heartbeats extend it.
        heartbeat_seconds: heartbeat period (default a third of ``lease_seconds``).
        wait_seconds: long-poll time of one lease request. A stop waits for the poll in
            flight to answer (and releases what it brings) rather than leave a lease granted
            to nobody, until ``shutdown_timeout`` at most; a second stop (``now=True``, a
            second signal) does not wait.
        groups: lease only from these groups (default any).
        shutdown_timeout: on stop, in-flight handlers get this long to finish; then leases
            still held are released (the attempt is not counted) and calls still retrying
            give up (a report the service did not get is lost: its lease expires there),
            so that :meth:`run` returns a few seconds later at most (a sync handler still
            running then keeps its thread, and so the process, alive until it returns).
        cancel_grace_seconds: after a cancel directive, how long to wait for the handler
            to stop before ``on_cancel`` runs anyway.
        retry: how transient HTTP failures are retried.
        transport: an ``httpx.AsyncBaseTransport`` (tests).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        worker_id: str | None = None,
        concurrency: int = 10,
        lease_seconds: float = 30.0,
        heartbeat_seconds: float | None = None,
        wait_seconds: float = 5.0,
        groups: Iterable[str] | None = None,
        shutdown_timeout: float = 30.0,
        cancel_grace_seconds: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.url = url or os.environ.get("TASKMILL_URL") or DEFAULT_URL
        self.token = token if token is not None else os.environ.get("TASKMILL_TOKEN")
        self.worker_id = worker_id or _default_worker_id()
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds or lease_seconds / 3
        self.wait_seconds = wait_seconds
        self.groups = list(groups) if groups is not None else None
        self.shutdown_timeout = shutdown_timeout
        self.cancel_grace_seconds = cancel_grace_seconds
        self.retry = retry or RetryPolicy(max_attempts=None, deadline_seconds=60.0)
        self.transport = transport
        #: Counts of what happened: leased, completed, failed, retried, released,
        #: cancelled (cancels acknowledged, those of ``cancel``-phase leases included),
        #: lost (the lease expired or was replaced: the outcome was dropped), forced (an
        #: operator force-cancelled the task while this worker held it: the handler or
        #: hook was stopped, nothing reported or acknowledged).
        self.stats: Counter[str] = Counter()
        self._handlers: dict[str, Registration] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._abort: asyncio.Event | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._stop_requested = False
        self._running: dict[str, TaskContext] = {}
        self.started = threading.Event()

    # -- registration --------------------------------------------------------------

    def register(
        self,
        type: str,
        handler: Handler,
        *,
        on_cancel: Handler | None = None,
        finalize: Handler | None = None,
    ) -> None:
        """Run ``handler`` for tasks of ``type``.

        ``on_cancel(ctx)`` runs when the server revokes the lease (superseded or cancelled),
        after the handler stopped, and alone in a ``cancel``-phase lease (the task was
        revoked after its execute phase had ended, e.g. while it waited for its children);
        ``finalize(ctx)`` runs in the finalize phase, once every child the handler spawned
        has ended (its return value becomes the result). Each may be sync (run in a
        thread) or async.

        A task force-cancelled by an operator (``POST /tasks/{id}/cancel`` with ``force``)
        is over at once: the worker learns it from its next heartbeat, cancels an async
        handler or hook (a sync one sees ``ctx.cancelled``; its outcome is dropped), runs
        no ``on_cancel`` and reports nothing (``stats["forced"]``).
        """
        self._handlers[type] = Registration(handler, on_cancel, finalize)

    def handler(
        self,
        type: str,
        *,
        on_cancel: Handler | None = None,
        finalize: Handler | None = None,
    ) -> Callable[[H], H]:
        """Decorator form of :meth:`register`."""

        def decorate(fn: H) -> H:
            self.register(type, fn, on_cancel=on_cancel, finalize=finalize)
            return fn

        return decorate

    @property
    def types(self) -> list[str]:
        """The task types this worker leases."""
        return sorted(self._handlers)

    # -- running -------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM or SIGINT (a second one stops at once, releasing leases)."""
        asyncio.run(self.run_async(handle_signals=True))

    def stop(self, *, now: bool = False) -> None:
        """Stop leasing; finish in-flight work (``now``: release it at once). Thread-safe."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stop_requested = True
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._request_stop(now)
        else:
            loop.call_soon_threadsafe(self._request_stop, now)

    def _request_stop(self, now: bool) -> None:
        assert self._stop is not None and self._abort is not None
        if self._stop.is_set() or now:
            self._abort.set()
        else:
            # The first stop starts the shutdown deadline. Whatever the worker is doing
            # then (waiting for a poll, for handlers, for a retry), it releases what it
            # holds and every retry gives up: the stop's duration is bounded.
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self.shutdown_timeout, self._abort.set)
        self._stop.set()
        for ctx in self._running.values():
            ctx._stopping.set()

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Run in the current event loop until :meth:`stop`."""
        if not self._handlers:
            raise ValueError("no handlers registered")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        self._abort = asyncio.Event()
        if self._stop_requested:  # stop() before the loop existed
            self._stop_requested = False
            self._request_stop(False)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._request_stop, False)
        options = client_options(self.url, self.token, max(30.0, self.wait_seconds + 15))
        http = AsyncHTTP(
            httpx.AsyncClient(transport=self.transport, **options),
            self.retry,
            # Past the shutdown deadline (or at a second stop) no call tries again.
            give_up=self._abort,
        )
        executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="taskmill-handler")
        runners: set[asyncio.Task[None]] = set()
        slot_freed = asyncio.Event()
        try:
            self.started.set()
            await self._lease_loop(http, executor, runners, slot_freed)
            if runners:
                log.info("stopping: %d task(s) in flight", len(runners))
                await self._drain(runners)
            if runners:  # the deadline passed: the runners release what they hold
                await asyncio.wait(runners, timeout=_LAST_WORDS_SECONDS)
        finally:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            for runner in runners:
                runner.cancel()
            executor.shutdown(wait=False, cancel_futures=True)
            await http.aclose()
            self._loop = None

    async def _drain(self, runners: set[asyncio.Task[None]]) -> None:
        # Wait for in-flight work until it is done, the shutdown deadline passes or a
        # second stop comes (both set _abort).
        assert self._abort is not None
        abort = asyncio.ensure_future(self._abort.wait())
        try:
            while runners and not abort.done():
                await asyncio.wait([*runners, abort], return_when="FIRST_COMPLETED")
        finally:
            abort.cancel()

    async def _lease_loop(
        self,
        http: AsyncHTTP,
        executor: ThreadPoolExecutor,
        runners: set[asyncio.Task[None]],
        slot_freed: asyncio.Event,
    ) -> None:
        assert self._stop is not None and self._abort is not None
        stop = asyncio.ensure_future(self._stop.wait())
        backoff = 0.0
        try:
            while not self._stop.is_set():
                free = self.concurrency - len(runners)
                if free <= 0:
                    slot_freed.clear()
                    freed = asyncio.ensure_future(slot_freed.wait())
                    await asyncio.wait([freed, stop], return_when="FIRST_COMPLETED")
                    freed.cancel()
                    continue
                poll = asyncio.ensure_future(self._lease(http, free))
                await asyncio.wait([poll, stop], return_when="FIRST_COMPLETED")
                if not poll.done():
                    # Stopping during a long poll: let it answer (it is bounded by
                    # wait_seconds) and give back whatever it brings, rather than drop the
                    # connection and leave leases granted to nobody until they expire.
                    abort = asyncio.ensure_future(self._abort.wait())
                    await asyncio.wait(
                        [poll, abort], timeout=self.wait_seconds + 5, return_when="FIRST_COMPLETED"
                    )
                    abort.cancel()
                    if not poll.done():
                        poll.cancel()
                        with contextlib.suppress(asyncio.CancelledError, TaskmillError):
                            await poll
                        return
                try:
                    leases = poll.result()
                except (Unavailable, ServerError, LeaseLost) as exc:
                    backoff = min(max(backoff * 2, 0.5), 10.0)
                    log.warning("lease request failed (%s); again in %.1fs", exc, backoff)
                    await asyncio.wait([stop], timeout=backoff)
                    continue
                backoff = 0.0
                if self._stop.is_set():
                    await asyncio.gather(*(self._release(http, lease) for lease in leases))
                    return
                for lease in leases:
                    self.stats["leased"] += 1
                    runner = asyncio.create_task(self._run_lease(http, executor, lease))
                    runners.add(runner)

                    def done(task: asyncio.Task[None]) -> None:
                        runners.discard(task)
                        slot_freed.set()

                    runner.add_done_callback(done)
        finally:
            stop.cancel()

    async def _lease(self, http: AsyncHTTP, n: int) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "worker_id": self.worker_id,
            "types": self.types,
            "max_tasks": n,
            "lease_seconds": self.lease_seconds,
            "wait_seconds": self.wait_seconds,
        }
        if self.groups:
            body["groups"] = self.groups
        return await http.send(
            _lease_request(body),
            retry=replace(self.retry, max_attempts=None, deadline_seconds=30.0),
            give_up=self._stop,  # a stop ends the retries at once: no new work is wanted
        )

    async def _release(self, http: AsyncHTTP, lease: Mapping[str, Any]) -> None:
        try:
            await http.send(_on_lease(lease["lease_id"], "release", ignore), retry=self._short())
            self.stats["released"] += 1
        except TaskmillError as exc:
            log.warning("could not release %s: %s", lease["lease_id"], exc)

    def _short(self) -> RetryPolicy:
        # Calls on a lease are worth retrying only while the lease may still be alive.
        return replace(self.retry, max_attempts=None, deadline_seconds=max(self.lease_seconds, 5.0))

    # -- one lease -----------------------------------------------------------------

    def _client(self, http: AsyncHTTP) -> AsyncClient:
        # The producer API over the worker's connections (children, reads).
        return AsyncClient(self.url, _http=http)

    def _context(self, http: AsyncHTTP, lease: Mapping[str, Any]) -> TaskContext:
        async def children(task_id: str) -> list[Task]:
            # 1000: the largest page GET /tasks gives.
            return [t async for t in self._client(http).query(parent_id=task_id, page_size=1000)]

        assert self._loop is not None
        return TaskContext(
            lease,
            worker_id=self.worker_id,
            loop=self._loop,
            submit=lambda spec: http.send(submit_call(spec)),
            list_children=children,
        )

    async def _invoke(
        self, fn: Handler, ctx: TaskContext, executor: ThreadPoolExecutor | None
    ) -> Any:
        # Hooks pass executor=None: the loop's default pool, so that an on_cancel never
        # waits behind handler threads that are still busy.
        if _is_async(fn):
            return await fn(ctx)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(executor, fn, ctx)
        if inspect.isawaitable(result):  # a sync function that returned a coroutine
            return await result
        return result

    async def _run_lease(
        self, http: AsyncHTTP, executor: ThreadPoolExecutor, lease: Mapping[str, Any]
    ) -> None:
        assert self._abort is not None
        ctx = self._context(http, lease)
        reg = self._handlers.get(ctx.type)
        if reg is None:  # not ours (the server filters by type; be safe anyway)
            await self._release(http, lease)
            return
        if self._stop is not None and self._stop.is_set():
            ctx._stopping.set()
        self._running[ctx.lease_id] = ctx
        lost = asyncio.Event()
        beats = asyncio.create_task(self._heartbeats(http, ctx, lost))
        fn: Handler | None = reg.finalize if ctx.phase == "finalize" else reg.handler
        try:
            if ctx.phase == "cancel":  # revoked after its execute phase: only on_cancel
                await self._on_cancel_and_ack(http, ctx, reg)
                return
            if fn is None:
                await self._finish_without_finalize(http, ctx)
                return
            work = asyncio.ensure_future(self._invoke(fn, ctx, executor))
            cancel = asyncio.ensure_future(ctx._cancel_event.wait())
            gone = asyncio.ensure_future(lost.wait())
            abort = asyncio.ensure_future(self._abort.wait())
            try:
                await asyncio.wait([work, cancel, gone, abort], return_when="FIRST_COMPLETED")
            finally:
                for waiter in (cancel, gone, abort):
                    waiter.cancel()
            if ctx._forced.is_set():  # ended by force: not even on_cancel runs
                _drop(work)
                self._forced_end(ctx)
            elif ctx.cancelled:
                await self._cancel_flow(http, ctx, reg, work, fn)
            elif lost.is_set():
                _drop(work)
                self.stats["lost"] += 1
                log.warning("lease %s lost; the handler's outcome is dropped", ctx.lease_id)
            elif not work.done():  # shutdown ran out of time: give the task back
                work.cancel()
                await self._release(http, lease)
            else:
                await self._report(http, ctx, reg, work, fn)
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            await ctx._close_beats()
            self._running.pop(ctx.lease_id, None)

    async def _finish_without_finalize(self, http: AsyncHTTP, ctx: TaskContext) -> None:
        # The finalize phase without a finalize hook: complete, keeping the execute
        # phase's result (a completion replaces the result).
        try:
            task = await self._client(http).get(ctx.task_id)
            await self._complete(http, ctx, task.result, None)
        except TaskmillError as exc:
            log.warning("finalize of %s: %s", ctx.task_id, exc)

    async def _report(
        self,
        http: AsyncHTTP,
        ctx: TaskContext,
        reg: Registration,
        work: asyncio.Future[Any],
        fn: Handler,
    ) -> None:
        exc = work.exception() if not work.cancelled() else asyncio.CancelledError()
        if exc is None:
            result = work.result()
            try:
                json.dumps(result)
            except (TypeError, ValueError) as err:
                await self._fail(http, ctx, err, retryable=False)
                return
            await self._complete(http, ctx, result, reg)
        elif isinstance(exc, Release):
            await self._release(http, ctx.raw)
        elif isinstance(exc, TaskCancelled | asyncio.CancelledError) and ctx.cancelled:
            await self._cancel_flow(http, ctx, reg, work, fn)
        elif isinstance(exc, asyncio.CancelledError | TaskCancelled):
            await self._release(http, ctx.raw)
        elif isinstance(exc, Retry):
            await self._fail(http, ctx, exc, retryable=True, after=exc.after)
        else:
            await self._fail(http, ctx, exc, retryable=not isinstance(exc, PermanentError))

    async def _complete(
        self, http: AsyncHTTP, ctx: TaskContext, result: Any, reg: Registration | None
    ) -> None:
        body: dict[str, Any] = {"result": result}
        state = ctx._unsent_state()
        if state is not None:
            body["state"] = state
        if ctx._actual_io is not None:
            body["actual_io"] = ctx._actual_io
        try:
            await http.send(_on_lease(ctx.lease_id, "complete", ignore, body), retry=self._short())
            self.stats["completed"] += 1
        except LeaseConflict as exc:
            await self._refused(http, ctx, reg, exc, ("completed", "waiting"), "completed")
        except (LeaseGone, NotFound) as exc:
            self.stats["lost"] += 1
            log.warning("complete %s: %s", ctx.lease_id, exc)
        except TaskmillError as exc:
            log.error("complete %s failed: %s", ctx.lease_id, exc)

    async def _fail(
        self,
        http: AsyncHTTP,
        ctx: TaskContext,
        exc: BaseException,
        *,
        retryable: bool,
        after: float | None = None,
    ) -> None:
        body: dict[str, Any] = {"error": _error_body(exc), "retryable": retryable}
        if after is not None:
            body["retry_after_seconds"] = after
        try:
            call = _on_lease(ctx.lease_id, "fail", _task_status, body)
            status = await http.send(call, retry=self._short())
            self.stats["failed" if status == "failed" else "retried"] += 1
        except LeaseConflict as err:
            await self._refused(
                http, ctx, None, err, ("failed", "scheduled", "pending", "paused"), "failed"
            )
        except (LeaseGone, NotFound) as err:
            self.stats["lost"] += 1
            log.warning("fail %s: %s", ctx.lease_id, err)
        except TaskmillError as err:
            log.error("fail %s failed: %s", ctx.lease_id, err)

    async def _refused(
        self,
        http: AsyncHTTP,
        ctx: TaskContext,
        reg: Registration | None,
        exc: LeaseConflict,
        already: tuple[str, ...],
        stat: str,
    ) -> None:
        # 409 on a report: revoked meanwhile (cancel it properly), or a retried call whose
        # first try had already been applied.
        if exc.task_status == "cancelling":
            ctx._request_cancel(_cancel_request(exc.problem, "cancel_reason"))
            reg = reg or self._handlers.get(ctx.type)
            await self._on_cancel_and_ack(http, ctx, reg)
        elif exc.task_status in already:
            self.stats[stat] += 1
        elif exc.task_status in _FORCE_ENDED:
            self._forced_end(ctx)
        else:
            self.stats["lost"] += 1
            log.warning("report on %s refused: %s", ctx.lease_id, exc)

    async def _cancel_flow(
        self,
        http: AsyncHTTP,
        ctx: TaskContext,
        reg: Registration,
        work: asyncio.Future[Any],
        fn: Handler,
    ) -> None:
        if not work.done():
            if _is_async(fn):
                work.cancel()
            # A sync handler cannot be interrupted: it sees ctx.cancelled; wait a while.
            await _unless_forced(ctx, work, self.cancel_grace_seconds)
        elif not work.cancelled():
            work.exception()  # retrieved: the outcome of a revoked lease is dropped
        await self._on_cancel_and_ack(http, ctx, reg)

    async def _on_cancel_and_ack(
        self, http: AsyncHTTP, ctx: TaskContext, reg: Registration | None
    ) -> None:
        if reg is not None and reg.on_cancel is not None and not ctx._forced.is_set():
            hook = asyncio.ensure_future(self._invoke(reg.on_cancel, ctx, None))
            await _unless_forced(ctx, hook)
            if not hook.done():
                hook.cancel()  # ended by force meanwhile (a sync hook's thread runs on)
            elif not hook.cancelled() and (exc := hook.exception()) is not None:
                log.error("on_cancel of %s raised", ctx.task_id, exc_info=exc)
        if ctx._forced.is_set():
            self._forced_end(ctx)
            return
        try:
            await http.send(_on_lease(ctx.lease_id, "cancelled", ignore), retry=self._short())
            self.stats["cancelled"] += 1
        except TaskmillError as exc:
            log.warning("acknowledging the cancel of %s: %s", ctx.lease_id, exc)

    async def _heartbeats(self, http: AsyncHTTP, ctx: TaskContext, lost: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx._flush.wait(), self.heartbeat_seconds)
            ctx._flush.clear()
            body, progress_version, state_version = ctx._heartbeat_body()
            body["extend_seconds"] = self.lease_seconds
            try:
                cancel = await http.send(
                    _on_lease(ctx.lease_id, "heartbeat", _cancel_directive, body),
                    retry=replace(
                        self.retry, max_attempts=None, deadline_seconds=self.heartbeat_seconds
                    ),
                )
            except (LeaseGone, NotFound):
                lost.set()
                return
            except LeaseConflict as exc:
                # The lease ended: reported already (nothing left to keep alive), or the
                # task was ended by force (nothing may be reported: stop the handler; a
                # sync one sees ctx.cancelled).
                if exc.task_status in _FORCE_ENDED:
                    ctx._request_cancel(_cancel_request(exc.problem, "cancel_reason"))
                    ctx._forced.set()
                    lost.set()
                return
            except TaskmillError as exc:
                log.warning("heartbeat %s failed: %s", ctx.lease_id, exc)
                await ctx._beat_done()
                continue
            ctx._sent(progress_version, state_version)
            if cancel is not None:
                ctx._request_cancel(cancel)
            await ctx._beat_done()

    def _forced_end(self, ctx: TaskContext) -> None:
        self.stats["forced"] += 1
        log.warning("task %s was ended by force; nothing is reported", ctx.task_id)


def _drop(work: asyncio.Future[Any]) -> None:
    # The lease is over and its outcome dropped: stop the work, or retrieve its error.
    if not work.done():
        work.cancel()
    elif not work.cancelled():
        work.exception()


async def _unless_forced(
    ctx: TaskContext, work: asyncio.Future[Any], timeout: float | None = None
) -> None:
    # Wait for work (at most timeout) unless the task is ended by force first. Cancelling
    # the waiter cancels the work too, as awaiting it directly would.
    forced = asyncio.ensure_future(ctx._forced.wait())
    try:
        await asyncio.wait([work, forced], timeout=timeout, return_when="FIRST_COMPLETED")
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        forced.cancel()


async def run_workers(*workers: Worker) -> None:
    """Run several workers in one event loop until each is stopped."""
    await asyncio.gather(*(w.run_async() for w in workers))


__all__ = ["Handler", "Registration", "Worker", "run_workers"]
