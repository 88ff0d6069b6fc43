"""Retention prunes old terminal tasks with their events, and old events, in batches."""

from __future__ import annotations

import asyncpg

from tests.conftest import ServerFactory
from tests.helpers import eventually, lease, submit


async def _count(db_url: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def test_old_terminal_tasks_and_their_events_are_pruned(
    make_server: ServerFactory, db_url: str
) -> None:
    server = await make_server(
        task_retention_seconds=0.5,
        events_retention_seconds=0,  # events are kept, except those of pruned tasks
        retention_interval_seconds=0.1,
        retention_batch_size=2,  # five tasks: several batches
    )
    c = server.client
    done = []
    for _ in range(5):
        await submit(c, type="old")
    for held in await lease(c, n=5, types=["old"]):
        r = await c.post(f"/leases/{held['lease_id']}/complete", json={})
        assert r.status_code == 200
        done.append(held["task"]["id"])
    live = await submit(c, type="live")
    (running,) = await lease(c, types=["live"], lease_seconds=600)

    async def gone() -> int:
        return sum([(await c.get(f"/tasks/{t}")).status_code == 404 for t in done])

    await eventually(gone, lambda n: n == len(done))
    assert await _count(db_url, "SELECT count(*) FROM events WHERE task_id = ANY($1)", done) == 0
    # Live tasks and their events stay.
    assert (await c.get(f"/tasks/{live['id']}")).json()["status"] == "running"
    assert await _count(db_url, "SELECT count(*) FROM events WHERE task_id = $1", live["id"]) >= 2
    assert running["task"]["id"] == live["id"]


async def test_old_events_are_pruned_tasks_kept(make_server: ServerFactory, db_url: str) -> None:
    server = await make_server(
        task_retention_seconds=0,  # keep tasks forever
        events_retention_seconds=0.5,
        retention_interval_seconds=0.1,
        retention_batch_size=3,
    )
    c = server.client
    tasks = [await submit(c, type="e") for _ in range(7)]
    await eventually(
        lambda: _count(db_url, "SELECT count(*) FROM events"), lambda n: n == 0, timeout=15
    )
    for t in tasks:
        assert (await c.get(f"/tasks/{t['id']}")).status_code == 200


async def test_a_terminal_child_of_a_live_parent_is_kept(
    make_server: ServerFactory, db_url: str
) -> None:
    server = await make_server(
        task_retention_seconds=0.3, events_retention_seconds=0, retention_interval_seconds=0.1
    )
    c = server.client
    await submit(c, type="parent")
    (parent,) = await lease(c, types=["parent"], lease_seconds=600)
    child = await submit(c, type="child", parent_id=parent["task"]["id"])
    other = await submit(c, type="child")
    for held in await lease(c, n=2, types=["child"]):
        await c.post(f"/leases/{held['lease_id']}/complete", json={})
    await eventually(
        lambda: c.get(f"/tasks/{other['id']}"), lambda r: r.status_code == 404, timeout=15
    )
    # Pruned in the same passes as `other`, had it been eligible; its parent still runs.
    assert (await c.get(f"/tasks/{child['id']}")).json()["status"] == "completed"
