"""The producer clients: :class:`Client` (blocking) and :class:`AsyncClient`.

Every operation is written once, in :class:`_Operations`, as a description of what to
send and how to read the answer; the two clients only do the I/O (in the manner of
httpx's one base class and two transports).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import (
    AsyncGenerator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, ParamSpec, Self, TypeVar, overload

import httpx

from ._http import (
    DEFAULT_URL,
    AsyncHTTP,
    Call,
    Params,
    RetryPolicy,
    SyncHTTP,
    client_options,
    error_of,
    json_object,
    segment,
)
from ._models import (
    AggregateGroup,
    Event,
    SubmitResult,
    TagKeys,
    TagValues,
    Task,
    TaskPage,
)
from ._sse import SSEParser

TagFilter = Mapping[str, str | Sequence[str]]

P = ParamSpec("P")
T = TypeVar("T")
# Covariant: an operation returning _Pages must match the overloads for _Items[T].
D = TypeVar("D", covariant=True)

# An event stream that fails this way is reopened (resuming at the last event seen).
_TRANSIENT = (502, 503, 504)
_RECONNECT_SECONDS = 0.5


def task_spec(
    type: str,
    payload: Any = None,
    *,
    dedup_key: str | None = None,
    on_duplicate: str | None = None,
    priority: int | None = None,
    group: str | None = None,
    tags: Mapping[str, str] | None = None,
    expected_io: Mapping[str, int] | None = None,
    retry: Mapping[str, Any] | None = None,
    run_after: datetime | str | None = None,
    ttl_seconds: float | None = None,
    label: str | None = None,
    parent_id: str | None = None,
    parent_lease_id: str | None = None,
    fail_fast: bool | None = None,
) -> dict[str, Any]:
    """The JSON of one submission (``POST /tasks``); omitted fields take server defaults."""
    spec: dict[str, Any] = {"type": type, "payload": payload}
    if isinstance(run_after, datetime):
        if run_after.tzinfo is None:
            raise ValueError("run_after needs a time zone")
        run_after = run_after.isoformat()
    optional = {
        "dedup_key": dedup_key,
        "on_duplicate": on_duplicate,
        "priority": priority,
        "group": group,
        "tags": dict(tags) if tags is not None else None,
        "expected_io": dict(expected_io) if expected_io is not None else None,
        "retry": dict(retry) if retry is not None else None,
        "run_after": run_after,
        "ttl_seconds": ttl_seconds,
        "label": label,
        "parent_id": parent_id,
        "parent_lease_id": parent_lease_id,
        "fail_fast": fail_fast,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    return spec


def _safe_to_repeat(specs: Iterable[Mapping[str, Any]]) -> bool:
    # A repeated submit must not create a second task: only a dedup key with "skip"
    # makes the repeat answer the task the first try created.
    return all(s.get("dedup_key") and s.get("on_duplicate", "skip") == "skip" for s in specs)


def submit_call(spec: dict[str, Any]) -> Call[SubmitResult]:
    """``POST /tasks`` of one :func:`task_spec` (the worker's children are sent so too)."""
    return Call(
        "POST", "/tasks", SubmitResult.from_json, json=spec, idempotent=_safe_to_repeat([spec])
    )


def _each(name: str, value: str | Sequence[str] | None) -> list[tuple[str, str]]:
    # A repeatable query parameter: one value or several (any of them matches).
    if value is None:
        return []
    return [(name, v) for v in ([value] if isinstance(value, str) else value)]


def _filters(
    status: str | Sequence[str] | None,
    type: str | Sequence[str] | None,
    group: str | Sequence[str] | None,
    tags: TagFilter | None,
    parent_id: str | None,
) -> list[tuple[str, str]]:
    params = [*_each("status", status), *_each("type", type), *_each("group", group)]
    for key, values in (tags or {}).items():
        params.extend(_each(f"tag.{key}", values))
    if parent_id is not None:
        params.append(("parent_id", parent_id))
    return params


def _page_call(filters: Params, limit: int, cursor: str | None) -> Call[TaskPage]:
    params = [*filters, ("limit", limit), *([("cursor", cursor)] if cursor else [])]
    return Call("GET", "/tasks", _task_page, params=params)


def _task_page(body: Any) -> TaskPage:
    return TaskPage([Task.from_json(t) for t in body["tasks"]], body.get("next_cursor"))


def _aggregate_groups(body: Any) -> list[AggregateGroup]:
    return [AggregateGroup.from_json(g) for g in body["groups"]]


def _batch_results(body: Any) -> list[SubmitResult]:
    return [SubmitResult.from_json(item) for item in body["results"]]


def _optional(**params: str | int | None) -> list[tuple[str, str | int]]:
    # The parameters that were given; the server's defaults stand for the others.
    return [(name, value) for name, value in params.items() if value is not None]


class _Items(Generic[T]):
    """A description whose answer is items handed out as they come (a generator on a
    :class:`Client`, an async generator on an :class:`AsyncClient`)."""


@dataclass
class _Pages(_Items[Task]):
    """``GET /tasks`` page after page, up to ``limit`` tasks: a loop sends each
    :meth:`next` until there is none and yields what :meth:`take` keeps of its answer."""

    filters: Params
    page_size: int
    limit: int | None
    _cursor: str | None = None
    _seen: int = 0
    _done: bool = False

    def next(self) -> Call[TaskPage] | None:
        """The request of the next page, or None once every task wanted was taken."""
        if self._done:
            return None
        size = self.page_size
        if self.limit is not None:
            size = max(1, min(size, self.limit - self._seen))
        return _page_call(self.filters, size, self._cursor)

    def take(self, page: TaskPage) -> list[Task]:
        """The tasks of ``page`` to hand out (none past ``limit``)."""
        tasks = page.tasks if self.limit is None else page.tasks[: self.limit - self._seen]
        self._seen += len(tasks)
        self._cursor = page.next_cursor
        self._done = not page.next_cursor or (self.limit is not None and self._seen >= self.limit)
        return tasks


@dataclass
class _EventStream(_Items[Event]):
    """``GET /events`` followed across reconnections: a loop opens each :meth:`connect`,
    hands an error answer to :meth:`refused` and each line of a good one to :meth:`feed`;
    after a failure it waits ``_RECONNECT_SECONDS`` and connects again."""

    params: Params
    last_event_id: str | None
    _parser: SSEParser = field(default_factory=SSEParser)

    def connect(self) -> dict[str, Any]:
        """The arguments of ``httpx`` ``stream()`` for a new connection, which resumes
        after the last event seen."""
        self._parser = SSEParser()  # a new connection: no half-read event carries over
        headers = {"last-event-id": self.last_event_id} if self.last_event_id else {}
        return {
            "method": "GET",
            "url": "/events",
            "params": self.params,
            "headers": headers,
            "timeout": None,  # the stream is endless; keep-alive comments arrive meanwhile
        }

    def refused(self, response: httpx.Response) -> None:
        """An error answer (its body read): raise it, unless it is worth reconnecting."""
        if response.status_code not in _TRANSIENT:
            raise error_of(response)

    def feed(self, line: str) -> Event | None:
        """One line of the stream; the event it completes, if any."""
        event = self._parser.feed(line)
        if event is not None:
            self.last_event_id = event.id
        return event


class operation(Generic[P, D]):
    """Makes a description of an operation the method of both clients.

    The decorated function takes the method's arguments and returns what to send: a
    :class:`Call`, :class:`_Pages` or :class:`_EventStream`. On a :class:`Client` the
    method sends it and returns the value (or a generator); on an :class:`AsyncClient`
    it returns an awaitable (or an async generator). Both share the docstring.
    """

    def __init__(self, build: Callable[P, D]) -> None:
        self.build = build
        self.__doc__ = build.__doc__  # what help() shows of the class's attribute
        # What help() shows of a bound method: the arguments, not the description.
        self._signature = inspect.signature(build).replace(
            return_annotation=inspect.Signature.empty
        )

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self: operation[P, Call[T]], obj: Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self: operation[P, Call[T]], obj: AsyncClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(
        self: operation[P, _Items[T]], obj: Client, owner: type[Any]
    ) -> Callable[P, Generator[T, None, None]]: ...
    @overload
    def __get__(
        self: operation[P, _Items[T]], obj: AsyncClient, owner: type[Any]
    ) -> Callable[P, AsyncGenerator[T, None]]: ...

    def __get__(self, obj: Client | AsyncClient | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        client, build = obj, self.build

        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            description = build(*args, **kwargs)
            if isinstance(description, Call):
                return client._send(description)
            if isinstance(description, _Pages):
                return client._walk(description)
            assert isinstance(description, _EventStream)
            return client._follow(description)

        functools.update_wrapper(method, build)
        method.__signature__ = self._signature  # type: ignore[attr-defined]
        return method


class _Operations:
    """The operations of both clients, each described once (see :class:`operation`)."""

    @operation
    def submit(type: str, payload: Any = None, **fields: Any) -> Call[SubmitResult]:
        """Submit one task; ``fields`` are those of :func:`task_spec`.

        Raises :class:`DuplicateRejected` when ``on_duplicate="reject"`` and the key is held.
        """
        return submit_call(task_spec(type, payload, **fields))

    @operation
    def submit_batch(specs: Iterable[Mapping[str, Any]]) -> Call[list[SubmitResult]]:
        """Submit many tasks (each a :func:`task_spec` dict) in one transaction, in order."""
        items = [dict(s) for s in specs]
        return Call(
            "POST",
            "/tasks/batch",
            _batch_results,
            json={"tasks": items},
            idempotent=_safe_to_repeat(items),
        )

    @operation
    def get(task_id: str) -> Call[Task]:
        """One task by id (:class:`NotFound` if unknown or pruned by retention)."""
        return Call("GET", f"/tasks/{segment(task_id)}", Task.from_json)

    @operation
    def page(
        *,
        status: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        group: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Call[TaskPage]:
        """One page of tasks matching every filter (tags: AND across keys, OR per key)."""
        return _page_call(_filters(status, type, group, tags, parent_id), limit, cursor)

    @operation
    def query(
        *,
        status: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        group: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
        parent_id: str | None = None,
        page_size: int = 500,
        limit: int | None = None,
    ) -> _Pages:
        """Every matching task (up to ``limit``), fetching pages as it goes."""
        return _Pages(_filters(status, type, group, tags, parent_id), page_size, limit)

    @operation
    def aggregate(
        group_by: Sequence[str],
        *,
        sum: Sequence[str] = (),
        min: Sequence[str] = (),
        max: Sequence[str] = (),
        avg: Sequence[str] = (),
        status: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        group: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
    ) -> Call[list[AggregateGroup]]:
        """Counts (and sums, minima, maxima, averages) grouped by ``tag.<key>``, ``status``,
        ``type`` or ``group`` (``GET /tasks/aggregate``)."""
        params = [*_each("group_by", group_by)]
        for name, fields in (("sum", sum), ("min", min), ("max", max), ("avg", avg)):
            params.extend(_each(name, fields))
        params.extend(_filters(status, type, group, tags, None))
        return Call("GET", "/tasks/aggregate", _aggregate_groups, params=params)

    @operation
    def tag_keys(prefix: str | None = None, limit: int | None = None) -> Call[TagKeys]:
        """The distinct tag keys of the retained tasks, sorted (``GET /tags``).

        ``prefix`` keeps the keys that start with it (``%`` and ``_`` are plain
        characters); ``limit`` caps how many (the server's default: 1000).
        """
        params = _optional(prefix=prefix, limit=limit)
        return Call("GET", "/tags", TagKeys.from_json, params=params)

    @operation
    def tag_values(
        key: str,
        *,
        status: str | Sequence[str] | None = None,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> Call[TagValues]:
        """Each value of the tag ``key`` with how many tasks carry it, the most common
        first (``GET /tags/{key}/values``); ``.counts`` is ``{value: count}``.

        ``status`` counts only tasks in these statuses; ``prefix`` keeps the values that
        start with it; ``limit`` caps how many values (the server's default: 1000).
        """
        params = [*_each("status", status), *_optional(prefix=prefix, limit=limit)]
        # The key may hold "/" (the route takes the rest of the path up to /values).
        path = f"/tags/{segment(key)}/values"
        return Call("GET", path, TagValues.from_json, params=params)

    @operation
    def cancel(task_id: str, *, force: bool = False) -> Call[Task]:
        """Cancel a task and its descendants (leased ones are revoked, their workers run
        ``on_cancel``). ``force`` ends them all at once instead, without waiting for any
        worker (an operator's way out of a stuck cancel; no ``on_cancel`` runs)."""
        body = {"force": True} if force else None  # no body: the plain cancel, as before
        return Call("POST", f"/tasks/{segment(task_id)}/cancel", Task.from_json, json=body)

    @operation
    def snapshot(by_tag: str | None = None) -> Call[dict[str, Any]]:
        """Counts by status, type and group (``by_tag``: per value of that tag too)."""
        return Call("GET", "/snapshot", json_object, params=_optional(by_tag=by_tag or None))

    @operation
    def events(
        *,
        event: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        task_id: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
        last_event_id: str | None = None,
    ) -> _EventStream:
        """Follow ``GET /events``; reconnects after failures, resuming at the last event."""
        params = [*_filters(None, type, None, tags, None), *_each("event", event)]
        params.extend(_each("task_id", task_id))
        return _EventStream(params, last_event_id)

    @operation
    def put_group(
        name: str, *, max_concurrency: int | object | None = ..., paused: bool | None = None
    ) -> Call[dict[str, Any]]:
        """Configure a group (``...`` leaves the limit as it is; ``None`` removes it)."""
        body: dict[str, Any] = {}
        if max_concurrency is not ...:
            body["max_concurrency"] = max_concurrency
        if paused is not None:
            body["paused"] = paused
        return Call("PUT", f"/groups/{segment(name)}", json_object, json=body)


class Client(_Operations):
    """A blocking client for producers and operators.

    Args:
        url: the service, e.g. ``http://127.0.0.1:8000``.
        token: a bearer token (``TASKMILL_TOKENS`` on the server), if auth is on.
        timeout: seconds per HTTP request.
        retry: how transient failures are retried (:class:`RetryPolicy`).
        transport: an ``httpx.BaseTransport`` to use instead of the network (tests).

    Every method raises a :class:`TaskmillError` subclass for an error answer.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        options = client_options(url, token, timeout)
        self._http = SyncHTTP(httpx.Client(transport=transport, **options), retry)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # -- the I/O of the operations ----------------------------------------------------

    def _send(self, call: Call[T]) -> T:
        return self._http.send(call)

    def _walk(self, pages: _Pages) -> Generator[Task, None, None]:
        while (call := pages.next()) is not None:
            yield from pages.take(self._send(call))

    def _follow(self, stream: _EventStream) -> Generator[Event, None, None]:
        while True:
            try:
                with self._http.client.stream(**stream.connect()) as r:
                    if r.is_error:
                        r.read()
                        stream.refused(r)
                    else:
                        for line in r.iter_lines():
                            if (event := stream.feed(line)) is not None:
                                yield event
            except httpx.TransportError:
                pass
            time.sleep(_RECONNECT_SECONDS)


class AsyncClient(_Operations):
    """The asyncio twin of :class:`Client` (same methods, awaitable).

    ``transport`` takes an ``httpx.AsyncBaseTransport``.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        _http: AsyncHTTP | None = None,
    ) -> None:
        self.url = url
        if _http is None:
            options = client_options(url, token, timeout)
            _http = AsyncHTTP(httpx.AsyncClient(transport=transport, **options), retry)
            self._owns_http = True
        else:  # the worker's: it closes that itself
            self._owns_http = False
        self._http = _http

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        if self._owns_http:
            await self._http.aclose()

    # -- the I/O of the operations ----------------------------------------------------

    async def _send(self, call: Call[T]) -> T:
        return await self._http.send(call)

    async def _walk(self, pages: _Pages) -> AsyncGenerator[Task, None]:
        while (call := pages.next()) is not None:
            for task in pages.take(await self._send(call)):
                yield task

    async def _follow(self, stream: _EventStream) -> AsyncGenerator[Event, None]:
        while True:
            try:
                async with self._http.client.stream(**stream.connect()) as r:
                    if r.is_error:
                        await r.aread()
                        stream.refused(r)
                    else:
                        async for line in r.aiter_lines():
                            if (event := stream.feed(line)) is not None:
                                yield event
            except httpx.TransportError:
                pass
            await asyncio.sleep(_RECONNECT_SECONDS)
