"""Two ways to drive the same use cases: over HTTP, and by calling the domain directly.

Both issue the same SQL statements; the difference between their figures is what the
HTTP layer costs (uvicorn, FastAPI validation and serialisation, JSON, the client).
Bodies that never change are built once per driver, so the loops measure the service
rather than the bench's own object building.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from app.config import Settings
from app.domain.service import Taskmill
from app.schemas.leases import Complete, CompleteBatch, CompleteItem, LeaseRequest
from app.schemas.tasks import TaskSubmit

from .scratch import SEED_TASK

#: Worker id of every lease the benchmark takes.
WORKER = "bench"

#: The batches ask for answers without task records (RFC 7240), as a producer or worker
#: that only needs ids and statuses would: the records are most of a batch's server cost.
_MINIMAL = {"Prefer": "return=minimal"}


@asynccontextmanager
async def direct_container(database_url: str) -> AsyncIterator[Taskmill]:
    """A started service container, as the app's lifespan makes one (without a sweeper)."""
    # Settings() reads the same TASKMILL_* environment as the server process does.
    taskmill = Taskmill(Settings(), database_url)
    await taskmill.start(sweep=False)
    try:
        yield taskmill
    finally:
        await taskmill.stop()


@dataclass(frozen=True, slots=True)
class Answer:
    """A response, read whole: status, body, decoded JSON on demand."""

    request: str  # "METHOD path", for error messages
    status_code: int
    text: str

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.text)


class LoadClient:
    """The bench's HTTP load generator: keep-alive connections from aiohttp.

    The load generator shares the machine's two cores with the server it measures, so
    it should cost as little as possible: against the same server, 8 loops of
    submit+lease+complete ran 271 cycles/s through aiohttp and 199 through httpx (which
    the SDK and the tests use), the difference being client CPU taken from the server.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One request; the whole body is read before returning."""
        async with self._session.request(
            method, self._base + path, json=json, params=params, headers=headers
        ) as response:
            return Answer(f"{method} {path}", response.status, await response.text())

    async def post(
        self, path: str, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """POST a JSON body."""
        return await self.request("POST", path, json=json, headers=headers)

    async def get(self, path: str, params: Any = None) -> Answer:
        """GET with query parameters."""
        return await self.request("GET", path, params=params)


@asynccontextmanager
async def http_client(base_url: str, concurrency: int) -> AsyncIterator[LoadClient]:
    """A load client with one keep-alive connection per loop (proxies ignored)."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False
    ) as session:
        yield LoadClient(session, base_url)


class BenchError(RuntimeError):
    """The service refused a call the benchmark expects to succeed."""


class Driver(Protocol):
    """The calls a benchmark loop makes."""

    async def submit_one(self) -> None:
        """Submit one task (``POST /tasks``)."""

    async def submit_many(self, n: int) -> None:
        """Submit ``n`` tasks in one batch (``POST /tasks/batch``)."""

    async def lease(self, n: int, wait_seconds: float = 0) -> list[str]:
        """Lease up to ``n`` tasks, long-polling up to ``wait_seconds`` for the first;
        return their lease ids."""

    async def complete_one(self, lease_id: str) -> None:
        """Complete one lease (``POST /leases/{id}/complete``)."""

    async def complete_many(self, lease_ids: Sequence[str]) -> None:
        """Complete many leases in one batch (``POST /leases/complete``)."""


def _check(response: Answer, status: int) -> None:
    if response.status_code != status:
        raise BenchError(
            f"{response.request} answered {response.status_code}: {response.text[:500]}"
        )


class HttpDriver:
    """Drives a running server through an HTTP client."""

    def __init__(self, client: LoadClient) -> None:
        self.client = client
        self._task = {"type": SEED_TASK.type, "payload": SEED_TASK.payload}

    async def submit_one(self) -> None:
        """Submit one task (``POST /tasks``)."""
        _check(await self.client.post("/tasks", json=self._task), 201)

    async def submit_many(self, n: int) -> None:
        """Submit ``n`` tasks in one batch (``POST /tasks/batch``)."""
        body = {"tasks": [self._task] * n}
        _check(await self.client.post("/tasks/batch", json=body, headers=_MINIMAL), 200)

    async def lease(self, n: int, wait_seconds: float = 0) -> list[str]:
        """Lease up to ``n`` tasks, long-polling up to ``wait_seconds`` for the first;
        return their lease ids."""
        body = {"worker_id": WORKER, "max_tasks": n, "wait_seconds": wait_seconds}
        response = await self.client.post("/leases", json=body)
        _check(response, 200)
        return [lease["lease_id"] for lease in response.json()["leases"]]

    async def complete_one(self, lease_id: str) -> None:
        """Complete one lease (``POST /leases/{id}/complete``)."""
        _check(await self.client.post(f"/leases/{lease_id}/complete", json={}), 200)

    async def complete_many(self, lease_ids: Sequence[str]) -> None:
        """Complete many leases in one batch (``POST /leases/complete``)."""
        items = [{"lease_id": lease_id} for lease_id in lease_ids]
        response = await self.client.post(
            "/leases/complete", json={"items": items}, headers=_MINIMAL
        )
        _check(response, 200)
        # A batch answers 200 even when items fail: only confirmed completions count.
        refused = [r for r in response.json()["results"] if not r["ok"]]
        if refused:
            raise BenchError(f"{len(refused)} completions refused, e.g. {refused[0]}")


class DirectDriver:
    """Calls the domain services of an in-process container: no HTTP at all."""

    def __init__(self, taskmill: Taskmill) -> None:
        self.taskmill = taskmill
        self._task: TaskSubmit = SEED_TASK

    async def submit_one(self) -> None:
        """Submit one task (what ``POST /tasks`` calls)."""
        await self.taskmill.tasks.submit(self._task)

    async def submit_many(self, n: int) -> None:
        """Submit ``n`` tasks in one batch (what ``POST /tasks/batch`` calls)."""
        await self.taskmill.tasks.submit_batch([self._task] * n, full=False)

    async def lease(self, n: int, wait_seconds: float = 0) -> list[str]:
        """Lease up to ``n`` tasks, long-polling up to ``wait_seconds`` for the first;
        return their lease ids."""
        request = LeaseRequest(worker_id=WORKER, max_tasks=n, wait_seconds=wait_seconds)
        response = await self.taskmill.leases.lease(request)
        return [lease.lease_id for lease in response.leases]

    async def complete_one(self, lease_id: str) -> None:
        """Complete one lease (what ``POST /leases/{id}/complete`` calls)."""
        await self.taskmill.leases.complete(lease_id, Complete())

    async def complete_many(self, lease_ids: Sequence[str]) -> None:
        """Complete many leases in one batch (what ``POST /leases/complete`` calls)."""
        items = [CompleteItem(lease_id=lease_id) for lease_id in lease_ids]
        result = await self.taskmill.leases.complete_batch(CompleteBatch(items=items), full=False)
        refused = [r for r in result.results if not r.ok]
        if refused:
            raise BenchError(f"{len(refused)} completions refused, e.g. {refused[0]}")
