"""The producer clients: :class:`Client` (blocking) and :class:`AsyncClient`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from ._http import DEFAULT_URL, AsyncHTTP, RetryPolicy, SyncHTTP, _error
from ._models import AggregateGroup, Event, SubmitResult, Task, TaskPage
from ._sse import SSEParser

TagFilter = Mapping[str, str | Sequence[str]]
Params = list[tuple[str, str | int | float | bool | None]]

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


def _filters(
    status: str | Sequence[str] | None,
    type: str | Sequence[str] | None,
    group: str | Sequence[str] | None,
    tags: TagFilter | None,
    parent_id: str | None,
) -> Params:
    params: Params = []
    for name, value in (("status", status), ("type", type), ("group", group)):
        if value is None:
            continue
        params.extend((name, v) for v in ([value] if isinstance(value, str) else value))
    for key, values in (tags or {}).items():
        params.extend((f"tag.{key}", v) for v in ([values] if isinstance(values, str) else values))
    if parent_id is not None:
        params.append(("parent_id", parent_id))
    return params


def _aggregate_params(
    group_by: Sequence[str],
    sums: Sequence[str],
    mins: Sequence[str],
    maxes: Sequence[str],
    avgs: Sequence[str],
) -> Params:
    params: Params = [("group_by", g) for g in group_by]
    for name, fields in (("sum", sums), ("min", mins), ("max", maxes), ("avg", avgs)):
        params.extend((name, f) for f in fields)
    return params


def _cancel_body(force: bool) -> dict[str, Any] | None:
    return {"force": True} if force else None  # no body: the plain cancel, as before


def _submit_result(response: httpx.Response) -> SubmitResult:
    return SubmitResult.from_json(response.json())


def _batch_results(response: httpx.Response) -> list[SubmitResult]:
    return [SubmitResult.from_json(item) for item in response.json()["results"]]


def _event_params(
    event: str | Sequence[str] | None,
    type: str | Sequence[str] | None,
    task_id: str | Sequence[str] | None,
    tags: TagFilter | None,
) -> Params:
    params = _filters(None, type, None, tags, None)
    for name, value in (("event", event), ("task_id", task_id)):
        if value is not None:
            params.extend((name, v) for v in ([value] if isinstance(value, str) else value))
    return params


class Client:
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
        self._http = SyncHTTP(url, token=token, timeout=timeout, retry=retry, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def submit(self, type: str, payload: Any = None, **fields: Any) -> SubmitResult:
        """Submit one task; ``fields`` are those of :func:`task_spec`.

        Raises :class:`DuplicateRejected` when ``on_duplicate="reject"`` and the key is held.
        """
        spec = task_spec(type, payload, **fields)
        r = self._http.request("POST", "/tasks", json=spec, idempotent=_safe_to_repeat([spec]))
        return _submit_result(r)

    def submit_batch(self, specs: Iterable[Mapping[str, Any]]) -> list[SubmitResult]:
        """Submit many tasks (each a :func:`task_spec` dict) in one transaction, in order."""
        items = [dict(s) for s in specs]
        r = self._http.request(
            "POST", "/tasks/batch", json={"tasks": items}, idempotent=_safe_to_repeat(items)
        )
        return _batch_results(r)

    def get(self, task_id: str) -> Task:
        """One task by id (:class:`NotFound` if unknown or pruned by retention)."""
        return Task.from_json(self._http.request("GET", f"/tasks/{task_id}").json())

    def page(
        self,
        *,
        status: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        group: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of tasks matching every filter (tags: AND across keys, OR per key)."""
        params = _filters(status, type, group, tags, parent_id)
        params.append(("limit", str(limit)))
        if cursor:
            params.append(("cursor", cursor))
        body = self._http.request("GET", "/tasks", params=params).json()
        return TaskPage([Task.from_json(t) for t in body["tasks"]], body.get("next_cursor"))

    def query(
        self,
        *,
        status: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        group: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
        parent_id: str | None = None,
        page_size: int = 500,
        limit: int | None = None,
    ) -> Iterator[Task]:
        """Every matching task (up to ``limit``), fetching pages as it goes."""
        cursor = None
        seen = 0
        while True:
            page = self.page(
                status=status,
                type=type,
                group=group,
                tags=tags,
                parent_id=parent_id,
                limit=page_size if limit is None else max(1, min(page_size, limit - seen)),
                cursor=cursor,
            )
            for task in page.tasks:
                yield task
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def aggregate(
        self,
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
    ) -> list[AggregateGroup]:
        """Counts (and sums, minima, maxima, averages) grouped by ``tag.<key>``, ``status``,
        ``type`` or ``group`` (``GET /tasks/aggregate``)."""
        params = _aggregate_params(group_by, sum, min, max, avg)
        params += _filters(status, type, group, tags, None)
        body = self._http.request("GET", "/tasks/aggregate", params=params).json()
        return [AggregateGroup.from_json(g) for g in body["groups"]]

    def cancel(self, task_id: str, *, force: bool = False) -> Task:
        """Cancel a task and its descendants (leased ones are revoked, their workers run
        ``on_cancel``). ``force`` ends them all at once instead, without waiting for any
        worker (an operator's way out of a stuck cancel; no ``on_cancel`` runs)."""
        r = self._http.request("POST", f"/tasks/{task_id}/cancel", json=_cancel_body(force))
        return Task.from_json(r.json())

    def snapshot(self, by_tag: str | None = None) -> dict[str, Any]:
        """Counts by status, type and group (``by_tag``: per value of that tag too)."""
        params = {"by_tag": by_tag} if by_tag else None
        body: dict[str, Any] = self._http.request("GET", "/snapshot", params=params).json()
        return body

    def events(
        self,
        *,
        event: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        task_id: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
        last_event_id: str | None = None,
    ) -> Iterator[Event]:
        """Follow ``GET /events``; reconnects after failures, resuming at the last event."""
        params = _event_params(event, type, task_id, tags)
        while True:
            headers = {"last-event-id": last_event_id} if last_event_id else {}
            try:
                with self._http.client.stream(
                    "GET", "/events", params=params, headers=headers, timeout=None
                ) as r:
                    if r.status_code >= 400:
                        r.read()
                        if r.status_code not in _TRANSIENT:
                            raise _error(r)
                    else:
                        parser = SSEParser()
                        for line in r.iter_lines():
                            ev = parser.feed(line)
                            if ev is not None:
                                last_event_id = ev.id
                                yield ev
            except httpx.TransportError:
                pass
            time.sleep(_RECONNECT_SECONDS)

    def put_group(
        self, name: str, *, max_concurrency: int | object | None = ..., paused: bool | None = None
    ) -> dict[str, Any]:
        """Configure a group (``...`` leaves the limit as it is; ``None`` removes it)."""
        body: dict[str, Any] = {}
        if max_concurrency is not ...:
            body["max_concurrency"] = max_concurrency
        if paused is not None:
            body["paused"] = paused
        out: dict[str, Any] = self._http.request("PUT", f"/groups/{name}", json=body).json()
        return out


class AsyncClient:
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
        self._http = _http or AsyncHTTP(
            url, token=token, timeout=timeout, retry=retry, transport=transport
        )
        self._owns_http = _http is None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        if self._owns_http:
            await self._http.aclose()

    async def submit(self, type: str, payload: Any = None, **fields: Any) -> SubmitResult:
        """Submit one task; see :meth:`Client.submit`."""
        spec = task_spec(type, payload, **fields)
        r = await self._http.request(
            "POST", "/tasks", json=spec, idempotent=_safe_to_repeat([spec])
        )
        return _submit_result(r)

    async def submit_batch(self, specs: Iterable[Mapping[str, Any]]) -> list[SubmitResult]:
        """Submit many tasks in one transaction; see :meth:`Client.submit_batch`."""
        items = [dict(s) for s in specs]
        r = await self._http.request(
            "POST", "/tasks/batch", json={"tasks": items}, idempotent=_safe_to_repeat(items)
        )
        return _batch_results(r)

    async def get(self, task_id: str) -> Task:
        """One task by id."""
        return Task.from_json((await self._http.request("GET", f"/tasks/{task_id}")).json())

    async def page(
        self,
        *,
        status: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        group: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of tasks; see :meth:`Client.list`."""
        params = _filters(status, type, group, tags, parent_id)
        params.append(("limit", str(limit)))
        if cursor:
            params.append(("cursor", cursor))
        body = (await self._http.request("GET", "/tasks", params=params)).json()
        return TaskPage([Task.from_json(t) for t in body["tasks"]], body.get("next_cursor"))

    async def query(
        self,
        *,
        status: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        group: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
        parent_id: str | None = None,
        page_size: int = 500,
        limit: int | None = None,
    ) -> AsyncIterator[Task]:
        """Every matching task (up to ``limit``), fetching pages as it goes."""
        cursor = None
        seen = 0
        while True:
            page = await self.page(
                status=status,
                type=type,
                group=group,
                tags=tags,
                parent_id=parent_id,
                limit=page_size if limit is None else max(1, min(page_size, limit - seen)),
                cursor=cursor,
            )
            for task in page.tasks:
                yield task
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def aggregate(
        self,
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
    ) -> list[AggregateGroup]:
        """Grouped counts and figures; see :meth:`Client.aggregate`."""
        params = _aggregate_params(group_by, sum, min, max, avg)
        params += _filters(status, type, group, tags, None)
        body = (await self._http.request("GET", "/tasks/aggregate", params=params)).json()
        return [AggregateGroup.from_json(g) for g in body["groups"]]

    async def cancel(self, task_id: str, *, force: bool = False) -> Task:
        """Cancel a task and its descendants; see :meth:`Client.cancel`."""
        r = await self._http.request("POST", f"/tasks/{task_id}/cancel", json=_cancel_body(force))
        return Task.from_json(r.json())

    async def snapshot(self, by_tag: str | None = None) -> dict[str, Any]:
        """Counts by status, type and group; see :meth:`Client.snapshot`."""
        params = {"by_tag": by_tag} if by_tag else None
        body: dict[str, Any] = (await self._http.request("GET", "/snapshot", params=params)).json()
        return body

    async def events(
        self,
        *,
        event: str | Sequence[str] | None = None,
        type: str | Sequence[str] | None = None,
        task_id: str | Sequence[str] | None = None,
        tags: TagFilter | None = None,
        last_event_id: str | None = None,
    ) -> AsyncIterator[Event]:
        """Follow ``GET /events``; reconnects after failures, resuming at the last event."""
        params = _event_params(event, type, task_id, tags)
        while True:
            headers = {"last-event-id": last_event_id} if last_event_id else {}
            try:
                async with self._http.client.stream(
                    "GET", "/events", params=params, headers=headers, timeout=None
                ) as r:
                    if r.status_code >= 400:
                        await r.aread()
                        if r.status_code not in _TRANSIENT:
                            raise _error(r)
                    else:
                        parser = SSEParser()
                        async for line in r.aiter_lines():
                            ev = parser.feed(line)
                            if ev is not None:
                                last_event_id = ev.id
                                yield ev
            except httpx.TransportError:
                pass
            await asyncio.sleep(_RECONNECT_SECONDS)

    async def put_group(
        self, name: str, *, max_concurrency: int | object | None = ..., paused: bool | None = None
    ) -> dict[str, Any]:
        """Configure a group; see :meth:`Client.put_group`."""
        body: dict[str, Any] = {}
        if max_concurrency is not ...:
            body["max_concurrency"] = max_concurrency
        if paused is not None:
            body["paused"] = paused
        r = await self._http.request("PUT", f"/groups/{name}", json=body)
        out: dict[str, Any] = r.json()
        return out
