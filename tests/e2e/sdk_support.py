"""Running SDK workers inside a test's event loop, next to real servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from taskmill_sdk import Worker


@contextlib.asynccontextmanager
async def running(*workers: Worker, stop_timeout: float = 30.0) -> AsyncIterator[None]:
    """Run the workers while inside; on exit stop them gracefully and wait for the end."""
    tasks = [asyncio.create_task(w.run_async()) for w in workers]
    try:
        yield
    finally:
        for w in workers:
            w.stop()
        done, pending = await asyncio.wait(tasks, timeout=stop_timeout)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()  # a worker that crashed fails the test
        assert not pending, "a worker did not stop in time"


class Recorder(httpx.AsyncBaseTransport):
    """The real HTTP transport, keeping ``(method, path, status)`` of every exchange
    (pass it as a worker's ``transport`` to see what the worker said to the server)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self.calls.append((request.method, request.url.path, response.status_code))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    def refused(self) -> list[tuple[str, str, int]]:
        """The exchanges answered 4xx, the path's ids replaced by their kind."""
        return [(m, _shape(path), status) for m, path, status in self.calls if 400 <= status < 500]

    def sent(self, suffix: str) -> list[tuple[str, int]]:
        """``(path, status)`` of the calls whose path ends with ``suffix``."""
        return [(path, status) for _, path, status in self.calls if path.endswith(suffix)]


def _shape(path: str) -> str:
    # /leases/<lease id>/heartbeat -> /leases/{id}/heartbeat (the same for /tasks/<id>).
    parts = path.split("/")
    return "/".join("{id}" if i == 2 and len(parts) > 3 else p for i, p in enumerate(parts))
