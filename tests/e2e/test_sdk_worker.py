"""The worker SDK against real servers: handlers, concurrency, heartbeats, state,
failures, graceful stop."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any

from taskmill_sdk import AsyncClient, PermanentError, Retry, TaskContext, Worker

from tests.conftest import Server
from tests.e2e.sdk_support import running
from tests.helpers import eventually, get_task, submit


def _worker(server: Server, **kw: Any) -> Worker:
    kw.setdefault("wait_seconds", 1)
    kw.setdefault("shutdown_timeout", 5)
    return Worker(server.url, **kw)


async def _status(server: Server, task_id: str, status: str, timeout: float = 15) -> dict[str, Any]:
    return await eventually(
        lambda: get_task(server.client, task_id), lambda t: t["status"] == status, timeout
    )


async def test_async_and_sync_handlers(server: Server) -> None:
    worker = _worker(server, concurrency=4)
    threads: list[str] = []

    @worker.handler("add")
    async def add(ctx: TaskContext) -> int:
        return int(ctx.payload["a"] + ctx.payload["b"])

    @worker.handler("upper")
    def upper(ctx: TaskContext) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"text": ctx.payload.upper(), "tags": ctx.tags, "attempt": ctx.attempt}

    t1 = await submit(server.client, type="add", payload={"a": 2, "b": 3})
    t2 = await submit(server.client, type="upper", payload="hi", tags={"k": "v"})
    async with running(worker):
        done1 = await _status(server, t1["id"], "completed")
        done2 = await _status(server, t2["id"], "completed")
    assert done1["result"] == 5
    assert done2["result"] == {"text": "HI", "tags": {"k": "v"}, "attempt": 1}
    assert threads and all(name != threading.main_thread().name for name in threads)
    assert worker.stats["completed"] == 2


async def test_concurrency_limit_and_batched_leasing(server: Server) -> None:
    worker = _worker(server, concurrency=3)
    gate = asyncio.Event()
    current = 0
    peak = 0

    @worker.handler("slow")
    async def slow(ctx: TaskContext) -> None:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        try:
            await gate.wait()
        finally:
            current -= 1

    ids = [(await submit(server.client, type="slow"))["id"] for _ in range(8)]
    async with running(worker):
        await eventually(lambda: asyncio.sleep(0, current), lambda n: n == 3)
        r = await server.client.get("/tasks", params={"status": "running"})
        assert len(r.json()["tasks"]) == 3  # exactly the free slots were leased
        gate.set()
        for task_id in ids:
            await _status(server, task_id, "completed")
    assert peak == 3


async def test_heartbeats_progress_and_state(server: Server) -> None:
    worker = _worker(server, lease_seconds=1.0, heartbeat_seconds=0.2)
    gate = asyncio.Event()

    @worker.handler("long")
    async def long(ctx: TaskContext) -> str:
        ctx.set_progress(0.5, "half way")
        ctx.update_state(upload_id="u-1")
        await ctx.flush()
        await gate.wait()  # outlives the 1 s lease several times: heartbeats keep it
        ctx.update_state(parts=3)
        return "done"

    task = await submit(server.client, type="long")
    async with running(worker):
        seen = await eventually(
            lambda: get_task(server.client, task["id"]),
            lambda t: t["progress"] is not None and t["state"] is not None,
        )
        assert seen["progress"] == {"fraction": 0.5, "message": "half way"}
        assert seen["state"] == {"upload_id": "u-1"}
        first_expiry = seen["lease"]["expires_at"]
        # Several heartbeats later the lease still holds, its expiry moved on.
        await eventually(
            lambda: get_task(server.client, task["id"]),
            lambda t: t["lease"] is not None and t["lease"]["expires_at"] > first_expiry,
        )
        await _outlive(server, task["id"], seen["started_at"], 2.5)
        gate.set()
        done = await _status(server, task["id"], "completed")
    assert done["attempt"] == 1  # never expired
    assert done["result"] == "done"
    assert done["state"] == {"upload_id": "u-1", "parts": 3}


async def _outlive(server: Server, task_id: str, started: str, seconds: float) -> None:
    # Until the task's updated_at (moved by each heartbeat, on the database's clock) is
    # `seconds` past its start, checking that it runs all along.
    t0 = datetime.fromisoformat(started.replace("Z", "+00:00"))

    async def now() -> float:
        body = await get_task(server.client, task_id)
        assert body["status"] == "running" and body["attempt"] == 1, body
        updated = datetime.fromisoformat(body["updated_at"].replace("Z", "+00:00"))
        return (updated - t0).total_seconds()

    await eventually(now, lambda s: s >= seconds, timeout=10)


async def test_failures_retry_and_permanent(server: Server) -> None:
    worker = _worker(server)
    attempts: list[int] = []

    @worker.handler("flaky")
    def flaky(ctx: TaskContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")
        return "second try works"

    @worker.handler("doomed")
    async def doomed(ctx: TaskContext) -> None:
        raise PermanentError("bad input")

    @worker.handler("later")
    async def later(ctx: TaskContext) -> None:
        raise Retry("not yet", after=3600)

    flaky_task = await submit(server.client, type="flaky", retry={"base_seconds": 0})
    doomed_task = await submit(server.client, type="doomed")
    later_task = await submit(server.client, type="later")
    async with running(worker):
        ok = await _status(server, flaky_task["id"], "completed")
        failed = await _status(server, doomed_task["id"], "failed")
        scheduled = await _status(server, later_task["id"], "scheduled")
    assert attempts == [1, 2] and ok["result"] == "second try works"
    assert failed["attempt"] == 1
    assert failed["error"]["message"] == "bad input"
    assert failed["error"]["type"] == "PermanentError"
    assert "Traceback" in failed["error"]["traceback"]
    assert scheduled["error"]["message"] == "not yet"


async def test_graceful_stop_finishes_work_in_flight(server: Server) -> None:
    worker = _worker(server, shutdown_timeout=20)
    started = asyncio.Event()
    gate = asyncio.Event()

    @worker.handler("job")
    async def job(ctx: TaskContext) -> str:
        started.set()
        await gate.wait()
        return "finished" if ctx.stopping else "not told"

    task = await submit(server.client, type="job")
    run = asyncio.create_task(worker.run_async())
    await asyncio.wait_for(started.wait(), 15)
    worker.stop()
    gate.set()
    await asyncio.wait_for(run, 20)
    done = await get_task(server.client, task["id"])
    assert done["status"] == "completed" and done["result"] == "finished"


async def test_graceful_stop_releases_what_does_not_finish(server: Server) -> None:
    worker = _worker(server, shutdown_timeout=0.3, concurrency=2)
    started = 0
    hold = threading.Event()

    @worker.handler("stuck-async")
    async def stuck_async(ctx: TaskContext) -> None:
        nonlocal started
        started += 1
        await asyncio.Event().wait()

    @worker.handler("stuck-sync")
    def stuck_sync(ctx: TaskContext) -> None:
        nonlocal started
        started += 1
        hold.wait(30)

    a = await submit(server.client, type="stuck-async")
    b = await submit(server.client, type="stuck-sync")
    run = asyncio.create_task(worker.run_async())
    try:
        await eventually(lambda: asyncio.sleep(0, started), lambda n: n == 2)
        worker.stop()
        await asyncio.wait_for(run, 20)
    finally:
        hold.set()
    for t in (a, b):
        back = await get_task(server.client, t["id"])
        assert back["status"] == "pending", back
        assert back["attempt"] == 0  # a release gives the attempt back
    assert worker.stats["released"] == 2


async def test_stop_during_an_idle_long_poll_is_prompt(server: Server) -> None:
    worker = _worker(server, wait_seconds=1)

    @worker.handler("nothing")
    async def nothing(ctx: TaskContext) -> None:
        return None

    run = asyncio.create_task(worker.run_async())
    await asyncio.wait_for(asyncio.to_thread(worker.started.wait, 10), 15)
    worker.stop()
    await asyncio.wait_for(run, 10)
    async with AsyncClient(server.url) as client:
        assert (await client.page(type="nothing")).tasks == []
