"""The SDK and the supersede/cancel/children protocol (issue 3's server side)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from taskmill_sdk import CancelRequest, TaskContext, Worker

from tests.conftest import Server
from tests.e2e.sdk_support import running
from tests.helpers import eventually, get_task, submit


def _worker(server: Server, **kw: Any) -> Worker:
    kw.setdefault("wait_seconds", 1)
    kw.setdefault("shutdown_timeout", 5)
    kw.setdefault("lease_seconds", 3)
    kw.setdefault("heartbeat_seconds", 0.2)
    return Worker(server.url, **kw)


async def _status(server: Server, task_id: str, status: str) -> dict[str, Any]:
    return await eventually(
        lambda: get_task(server.client, task_id), lambda t: t["status"] == status, 15
    )


async def test_supersede_runs_on_cancel_acks_and_hands_state_over(server: Server) -> None:
    worker = _worker(server)
    cancels: list[tuple[str, CancelRequest | None, dict[str, Any]]] = []
    previous: list[Any] = []
    interrupted = asyncio.Event()

    async def on_cancel(ctx: TaskContext) -> None:
        cancels.append((ctx.task_id, ctx.cancel_request, ctx.state))

    @worker.handler("upload", on_cancel=on_cancel)
    async def upload(ctx: TaskContext) -> str:
        if ctx.payload == "v1":
            ctx.update_state(upload_id="u-1")
            await ctx.flush()
            try:
                await asyncio.Event().wait()  # until the cancel interrupts it
            except asyncio.CancelledError:
                interrupted.set()
                raise
        previous.append(ctx.previous_state)
        return f"uploaded {ctx.payload}"

    old = await submit(server.client, type="upload", payload="v1", dedup_key="file")
    async with running(worker):
        await eventually(
            lambda: get_task(server.client, old["id"]), lambda t: t["state"] is not None
        )
        r = await server.client.post(
            "/tasks",
            json={
                "type": "upload",
                "payload": "v2",
                "dedup_key": "file",
                "on_duplicate": "supersede",
            },
        )
        new = r.json()["task"]
        assert r.json()["outcome"] == "superseded" and new["status"] == "blocked"
        gone = await _status(server, old["id"], "superseded")
        done = await _status(server, new["id"], "completed")
    assert interrupted.is_set()
    assert cancels == [(old["id"], CancelRequest("superseded", new["id"]), {"upload_id": "u-1"})]
    assert gone["result"] is None  # nothing reported for the revoked lease
    assert previous == [{"upload_id": "u-1"}]
    assert done["result"] == "uploaded v2"
    assert worker.stats["cancelled"] == 1


async def test_cancel_reaches_a_sync_handler_and_no_result_is_reported(server: Server) -> None:
    worker = _worker(server)
    hooks: list[str] = []
    saw_cancel = threading.Event()

    def on_cancel(ctx: TaskContext) -> None:
        hooks.append(ctx.cancel_request.reason if ctx.cancel_request else "?")

    @worker.handler("loop", on_cancel=on_cancel)
    def loop(ctx: TaskContext) -> str:
        while not ctx.cancelled:
            saw_cancel.wait(0.05)
        saw_cancel.set()
        return "a result nobody may see"

    task = await submit(server.client, type="loop")
    async with running(worker):
        await _status(server, task["id"], "running")
        r = await server.client.post(f"/tasks/{task['id']}/cancel")
        assert r.status_code == 200
        ended = await _status(server, task["id"], "cancelled")
    assert saw_cancel.is_set()
    assert hooks == ["cancelled"]
    assert ended["result"] is None


async def test_a_result_reported_after_revocation_turns_into_the_cancel_protocol(
    server: Server,
) -> None:
    # Heartbeats too rare to notice the cancel: the completion is refused (409,
    # cancelling) and the worker then runs on_cancel and acknowledges.
    worker = _worker(server, lease_seconds=30, heartbeat_seconds=25)
    gate = asyncio.Event()
    hooks: list[str] = []

    async def on_cancel(ctx: TaskContext) -> None:
        hooks.append(ctx.task_id)

    @worker.handler("quick", on_cancel=on_cancel)
    async def quick(ctx: TaskContext) -> str:
        await gate.wait()
        return "too late"

    task = await submit(server.client, type="quick")
    async with running(worker):
        await _status(server, task["id"], "running")
        assert (await server.client.post(f"/tasks/{task['id']}/cancel")).status_code == 200
        gate.set()
        ended = await _status(server, task["id"], "cancelled")
    assert hooks == [task["id"]]
    assert ended["result"] is None


async def test_children_and_finalize(server: Server) -> None:
    worker = _worker(server, concurrency=4)
    finalized: list[list[Any]] = []

    async def finalize(ctx: TaskContext) -> int:
        results = sorted(c.result for c in await ctx.children())
        finalized.append(results)
        return sum(results)

    @worker.handler("fan-out", finalize=finalize)
    async def fan_out(ctx: TaskContext) -> str:
        for n in (1, 2, 3):
            child = await ctx.spawn("square", n, tags={"part": str(n)})
            assert child.task is not None and child.task.parent_id == ctx.task_id
        return "spawned"

    @worker.handler("plain-parent")
    def plain_parent(ctx: TaskContext) -> str:
        ctx.spawn_sync("square", 4)
        return "kept"

    @worker.handler("square")
    async def square(ctx: TaskContext) -> int:
        assert ctx.tags["team"] == "a"  # inherited from the parent
        return int(ctx.payload) ** 2

    parent = await submit(server.client, type="fan-out", tags={"team": "a"})
    plain = await submit(server.client, type="plain-parent", tags={"team": "a"})
    async with running(worker):
        done = await _status(server, parent["id"], "completed")
        kept = await _status(server, plain["id"], "completed")
    assert finalized == [[1, 4, 9]]
    assert done["result"] == 14
    assert done["children"]["completed"] == 3
    assert kept["result"] == "kept"  # no finalize hook: the execute result stays
