"""Graceful shutdown of a real `taskmill serve` process on SIGTERM: requests in flight
finish, long polls end at once with an empty answer, nothing is half-written."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.api.support import table_counts
from tests.e2e.replicas import start_replica


async def test_sigterm_drains_gracefully(db_url: str, tmp_path: Path) -> None:
    replica = await start_replica(db_url, tmp_path)
    batch = json.dumps({"tasks": [{"type": "job", "payload": {"i": i}} for i in range(200)]})
    body = batch.encode()
    half = asyncio.Event()
    go_on = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        # The request is in flight (half its body sent) when the signal arrives.
        yield body[: len(body) // 2]
        half.set()
        await go_on.wait()
        yield body[len(body) // 2 :]

    async with httpx.AsyncClient(base_url=replica.url, timeout=30) as client:
        poll_started = time.monotonic()
        poll = asyncio.create_task(
            client.post("/leases", json={"worker_id": "w", "wait_seconds": 30})
        )
        upload = asyncio.create_task(
            client.post(
                "/tasks/batch", content=slow_body(), headers={"content-type": "application/json"}
            )
        )
        await asyncio.wait_for(half.wait(), 10)
        await asyncio.sleep(0.5)  # both requests are being served
        assert not poll.done()
        replica.proc.send_signal(15)  # SIGTERM

        # The long poll answers at once, empty, although it asked to wait 30 s.
        r = await asyncio.wait_for(poll, 10)
        assert r.status_code == 200, r.text
        assert r.json() == {"leases": []}
        assert time.monotonic() - poll_started < 10

        # The half-sent request is still being served: finish it, it is answered in full.
        await asyncio.sleep(0.5)
        assert replica.proc.returncode is None, "exited with a request in flight"
        go_on.set()
        r = await asyncio.wait_for(upload, 20)
        assert r.status_code == 200, r.text
        assert [x["outcome"] for x in r.json()["results"]] == ["created"] * 200

    code = await asyncio.wait_for(replica.proc.wait(), 30)
    assert code == 0, replica.output()
    # All of the batch and its events, nothing else: no half-written state.
    assert await table_counts(db_url) == (200, 200)
    # And the port is closed: new requests are refused, not queued.
    async with httpx.AsyncClient(base_url=replica.url, timeout=5) as client:
        try:
            await client.get("/healthz")
        except httpx.TransportError:
            pass
        else:
            raise AssertionError("still serving after shutdown")
