"""A small SSE reader for tests: follows GET /events on a real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Stream:
    """Events received so far (and the raw lines, for keep-alive checks)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    comments: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    ended: bool = False

    def of(self, name: str) -> list[dict[str, Any]]:
        """The received events named ``name``."""
        return [e for e in self.events if e["event"] == name]


async def _read(
    client: httpx.AsyncClient, params: Any, headers: dict[str, str], out: Stream
) -> None:
    try:
        await _lines(client, params, headers, out)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        out.error = exc
    out.ended = True
    out.arrived.set()


async def _lines(
    client: httpx.AsyncClient, params: Any, headers: dict[str, str], out: Stream
) -> None:
    async with client.stream("GET", "/events", params=params, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        event_id, name, data = None, None, []
        async for line in r.aiter_lines():
            if line.startswith(":"):
                out.comments += 1
                out.arrived.set()
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                body = json.loads("\n".join(data))
                assert str(body["id"]) == event_id and body["event"] == name, (event_id, body)
                out.events.append(body)
                out.ids.append(int(body["id"]))
                out.arrived.set()
                event_id, name, data = None, None, []


@contextlib.asynccontextmanager
async def follow(
    url: str, params: Any = None, last_event_id: str | None = None
) -> AsyncIterator[Stream]:
    """Follow the stream in the background while inside; the connection closes on exit."""
    out = Stream()
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None)) as client:
        task = asyncio.create_task(_read(client, params, headers, out))
        try:
            yield out
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_for(stream: Stream, check: Any, timeout: float = 15.0) -> None:
    """Wait (with a deadline) until ``check(stream)`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check(stream):
        if stream.error is not None:
            raise AssertionError(f"the stream failed: {stream.error!r}")
        if stream.ended:
            raise AssertionError("the server ended the stream")
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"stream condition not met in {timeout}s: {stream.events[-5:]}")
        stream.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stream.arrived.wait(), min(remaining, 0.5))
