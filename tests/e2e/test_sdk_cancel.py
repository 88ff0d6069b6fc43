"""The SDK and the supersede/cancel/children protocol (issue 3's server side): revoked
leases, cancel-phase leases, the server's reason on every path, force cancels."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from taskmill_sdk import AsyncClient, CancelRequest, Conflict, TaskContext, Worker

from tests.conftest import Server
from tests.e2e.sdk_support import Recorder, running
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


async def _hang(started: threading.Event, interrupted: threading.Event) -> None:
    """Say it started, then wait until cancelled (and say so)."""
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        interrupted.set()
        raise


async def _supersede(client: AsyncClient, payload: str) -> str:
    """Submit a new generation of the key ``file``; the id of the replacement."""
    new = await client.submit("upload", payload, dedup_key="file", on_duplicate="supersede")
    assert new.outcome == "superseded" and new.task is not None
    return new.task.id


@pytest.mark.parametrize("how", ["supersede", "cancel"])
async def test_a_waiting_parent_revoked_runs_its_on_cancel_in_a_cancel_phase_lease(
    server: Server, how: str
) -> None:
    # The parent completed and waits for its children; it owns what they fill (the
    # upload): revoked, the children's on_cancel run, then the parent's own, in a
    # cancel-phase lease with its saved state. Neither handler nor finalize runs again.
    worker = _worker(server, concurrency=4)
    hooks: list[tuple[str, str, CancelRequest | None, dict[str, Any]]] = []
    previous: list[Any] = []
    finalized: list[str] = []

    async def on_cancel(ctx: TaskContext) -> None:
        assert ctx.cancelled
        await ctx.flush()  # the lease's heartbeats go on while the hook runs
        hooks.append((ctx.task_id, ctx.phase, ctx.cancel_request, ctx.state))

    async def finalize(ctx: TaskContext) -> None:
        finalized.append(ctx.task_id)

    @worker.handler("upload", on_cancel=on_cancel, finalize=finalize)
    async def upload(ctx: TaskContext) -> str:
        if ctx.payload == "v2":
            previous.append(ctx.previous_state)
            return "uploaded v2"
        ctx.update_state(upload_id="u-1")
        for n in (1, 2):
            await ctx.spawn("part", n)
        return "parts spawned"

    @worker.handler("part", on_cancel=on_cancel)
    async def part(ctx: TaskContext) -> None:
        await asyncio.Event().wait()  # until the cancel reaches it

    parent = await submit(server.client, type="upload", payload="v1", dedup_key="file")
    async with running(worker), AsyncClient(server.url) as client:
        await _status(server, parent["id"], "waiting")
        parts = await eventually(
            lambda: client.page(parent_id=parent["id"], status="running"),
            lambda page: len(page.tasks) == 2,
        )
        if how == "supersede":
            new_id: str | None = await _supersede(client, "v2")
            expected = CancelRequest("superseded", new_id)
        else:
            new_id = None
            assert (await client.cancel(parent["id"])).status == "cancelling"
            expected = CancelRequest("cancelled")
        ended = await _status(server, parent["id"], "superseded" if new_id else "cancelled")
        if new_id:
            done = await _status(server, new_id, "completed")
            assert done["result"] == "uploaded v2"
        task = await client.get(parent["id"])
    part_ids = sorted(t.id for t in parts.tasks)
    assert sorted(hooks[:2]) == [(i, "execute", CancelRequest("cancelled"), {}) for i in part_ids]
    assert hooks[2:] == [(parent["id"], "cancel", expected, {"upload_id": "u-1"})]
    assert previous == ([{"upload_id": "u-1"}] if new_id else [])
    assert finalized == []
    assert ended["result"] == "parts spawned"  # the execute phase's result stays
    assert (task.phase, task.cancel_reason) == ("cancel", expected.reason)
    assert worker.stats["cancelled"] == 3


@pytest.mark.parametrize("outcome", ["return", "raise"])
async def test_a_report_refused_after_a_supersede_gives_on_cancel_the_servers_reason(
    server: Server, outcome: str
) -> None:
    # Heartbeats too rare to notice: the sync handler ignores the cancel and reports; the
    # 409 (cancelling) carries the reason, which on_cancel must see.
    recorder = Recorder()
    worker = _worker(server, lease_seconds=30, heartbeat_seconds=25, transport=recorder)
    hooks: list[CancelRequest | None] = []
    started = threading.Event()
    go_on = threading.Event()

    def on_cancel(ctx: TaskContext) -> None:
        hooks.append(ctx.cancel_request)

    @worker.handler("upload", on_cancel=on_cancel)
    def upload(ctx: TaskContext) -> str:
        if ctx.payload == "v1":
            started.set()
            assert go_on.wait(30)
            if outcome == "raise":
                raise RuntimeError("a failure nobody may see")
        return f"uploaded {ctx.payload}"

    old = await submit(server.client, type="upload", payload="v1", dedup_key="file")
    try:
        async with running(worker), AsyncClient(server.url) as client:
            await eventually(lambda: asyncio.sleep(0, started.is_set()), bool)
            new_id = await _supersede(client, "v2")
            go_on.set()
            gone = await _status(server, old["id"], "superseded")
            await _status(server, new_id, "completed")
    finally:
        go_on.set()
    assert hooks == [CancelRequest("superseded", new_id)]
    assert gone["result"] is None and gone["error"] is None
    report = "/complete" if outcome == "return" else "/fail"
    assert recorder.refused() == [("POST", f"/leases/{{id}}{report}", 409)]
    assert [status for _, status in recorder.sent("/cancelled")] == [200]
    assert worker.stats["cancelled"] == 1 and worker.stats["completed"] == 1


async def test_a_spawn_refused_after_a_supersede_cancels_the_context_with_the_reason(
    server: Server,
) -> None:
    worker = _worker(server, lease_seconds=30, heartbeat_seconds=25)
    hooks: list[CancelRequest | None] = []
    seen: list[tuple[str, bool, CancelRequest | None]] = []
    started = asyncio.Event()
    superseded = asyncio.Event()

    async def on_cancel(ctx: TaskContext) -> None:
        hooks.append(ctx.cancel_request)

    @worker.handler("upload", on_cancel=on_cancel)
    async def upload(ctx: TaskContext) -> str:
        if ctx.payload == "v1":
            started.set()
            await superseded.wait()
            try:
                await ctx.spawn("part", 1)
            except Conflict as exc:
                seen.append((exc.code, ctx.cancelled, ctx.cancel_request))
                raise
        return f"uploaded {ctx.payload}"

    old = await submit(server.client, type="upload", payload="v1", dedup_key="file")
    async with running(worker), AsyncClient(server.url) as client:
        await eventually(lambda: asyncio.sleep(0, started.is_set()), bool)
        new_id = await _supersede(client, "v2")
        superseded.set()
        await _status(server, old["id"], "superseded")
        await _status(server, new_id, "completed")
    expected = CancelRequest("superseded", new_id)
    assert seen == [("parent-not-running", True, expected)]
    assert hooks == [expected]
    assert worker.stats["cancelled"] == 1 and worker.stats["failed"] == 0


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_force_cancel_stops_the_handler_without_on_cancel_or_ack(
    server: Server, kind: str
) -> None:
    recorder = Recorder()
    worker = _worker(server, transport=recorder)
    hooks: list[str] = []
    started = threading.Event()
    interrupted = threading.Event()

    async def on_cancel(ctx: TaskContext) -> None:
        hooks.append(ctx.task_id)

    async def async_loop(ctx: TaskContext) -> None:
        await _hang(started, interrupted)

    def sync_loop(ctx: TaskContext) -> str:
        started.set()
        while not ctx.cancelled:  # a sync handler is told by ctx.cancelled
            interrupted.wait(0.02)
        interrupted.set()
        return "a result nobody may see"

    worker.register("loop", async_loop if kind == "async" else sync_loop, on_cancel=on_cancel)
    task = await submit(server.client, type="loop")
    async with running(worker), AsyncClient(server.url) as client:
        await eventually(lambda: asyncio.sleep(0, started.is_set()), bool)
        assert (await client.cancel(task["id"], force=True)).status == "cancelled"
        await eventually(lambda: asyncio.sleep(0, interrupted.is_set()), bool, 5)
        await eventually(lambda: asyncio.sleep(0, worker.stats["forced"]), bool, 5)
    ended = await get_task(server.client, task["id"])
    assert ended["status"] == "cancelled" and ended["result"] is None
    assert hooks == []
    assert recorder.sent("/cancelled") == []
    assert recorder.refused() == [("POST", "/leases/{id}/heartbeat", 409)]
    assert {k: v for k, v in worker.stats.items() if v} == {"leased": 1, "forced": 1}


async def test_without_on_cancel_a_cancel_phase_lease_is_acknowledged_at_once(
    server: Server,
) -> None:
    worker = _worker(server, concurrency=2)
    calls: list[str] = []

    @worker.handler("upload")
    async def upload(ctx: TaskContext) -> str:
        calls.append(ctx.phase)
        await ctx.spawn("part", 1)
        return "part spawned"

    @worker.handler("part")
    async def part(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    parent = await submit(server.client, type="upload")
    async with running(worker), AsyncClient(server.url) as client:
        await _status(server, parent["id"], "waiting")
        await eventually(
            lambda: client.page(parent_id=parent["id"], status="running"),
            lambda page: len(page.tasks) == 1,
        )
        await client.cancel(parent["id"])
        ended = await _status(server, parent["id"], "cancelled")
        await eventually(lambda: asyncio.sleep(0, worker.stats["cancelled"]), lambda n: n == 2)
    assert calls == ["execute"]  # the handler never runs for the cancel phase
    assert ended["result"] == "part spawned"
    assert worker.stats["completed"] == 1 and worker.stats["leased"] == 3


async def test_a_force_cancel_ends_a_stuck_on_cancel(server: Server) -> None:
    # The operator's way out of a stuck cancel: the revoked lease's on_cancel hangs; a
    # force ends the task, the hook is cancelled and nothing is acknowledged.
    recorder = Recorder()
    worker = _worker(server, transport=recorder)
    hooked = threading.Event()
    hook_interrupted = threading.Event()

    async def on_cancel(ctx: TaskContext) -> None:
        await _hang(hooked, hook_interrupted)

    @worker.handler("loop", on_cancel=on_cancel)
    async def loop(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    task = await submit(server.client, type="loop")
    async with running(worker), AsyncClient(server.url) as client:
        await _status(server, task["id"], "running")
        assert (await client.cancel(task["id"])).status == "cancelling"
        await eventually(lambda: asyncio.sleep(0, hooked.is_set()), bool, 5)
        assert (await client.cancel(task["id"], force=True)).status == "cancelled"
        await eventually(lambda: asyncio.sleep(0, hook_interrupted.is_set()), bool, 5)
        await eventually(lambda: asyncio.sleep(0, worker.stats["forced"]), bool, 5)
    assert (await get_task(server.client, task["id"]))["status"] == "cancelled"
    assert recorder.sent("/cancelled") == []
    assert recorder.refused() == [("POST", "/leases/{id}/heartbeat", 409)]
    assert worker.stats["cancelled"] == 0 and worker.stats["forced"] == 1
