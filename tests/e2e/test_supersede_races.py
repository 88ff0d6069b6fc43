"""Latest value wins under real concurrency: two replicas, many submitters and workers.

The proof does not rely on timing: the outbox records every lease grant and every end of
a lease in commit order of the transactions that caused them, so "never two leased tasks
for one key" is checked on the full history, not on samples.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import httpx

from tests.conftest import ServerFactory
from tests.helpers import eventually, get_task, lease

TYPE = "transfer"
KEY = "s3://bucket/hot-file"
# Events after which the task no longer holds a lease.
LEASE_ENDS = {
    "task.completed",
    "task.failed",
    "task.retrying",
    "task.released",
    "task.cancelled",
    "task.superseded",
    "task.waiting",
    "lease.expired",
}


async def _key_history(db_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetch(
            "SELECT e.id, e.event, e.task_id FROM events e JOIN tasks t ON t.id = e.task_id"
            " WHERE t.type = $1 AND t.dedup_key = $2 ORDER BY e.id",
            TYPE,
            KEY,
        )
    finally:
        await conn.close()


def assert_one_lease_at_a_time(history: list[asyncpg.Record]) -> int:
    """Walk the key's events in order; a grant while another task holds a lease fails."""
    holder: str | None = None
    grants = 0
    for row in history:
        if row["event"] == "task.leased":
            assert holder in (None, row["task_id"]), f"two leases at once: {holder}, {row}"
            holder = row["task_id"]
            grants += 1
        elif row["event"] in LEASE_ENDS and row["task_id"] == holder:
            holder = None
    return grants


async def test_hot_key_superseded_by_many_submitters_with_acking_workers(
    make_server: ServerFactory, db_url: str
) -> None:
    a, b = await make_server(), await make_server()
    clients = [a.client, b.client]
    submitting = asyncio.Event()
    submitting.set()
    leased = asyncio.Event()
    last_submit: dict[str, Any] = {}

    async def submitter(n: int) -> None:
        client = clients[n % 2]
        for i in range(12):
            r = await client.post(
                "/tasks",
                json={
                    "type": TYPE,
                    "dedup_key": KEY,
                    "on_duplicate": "supersede",
                    "payload": {"submitter": n, "i": i},
                },
            )
            assert r.status_code == 201, r.text
            last_submit[r.json()["task"]["id"]] = r.json()
            await asyncio.sleep(random.uniform(0, 0.02))  # spread submissions out

    async def worker(n: int) -> None:
        client = clients[n % 2]
        rng = random.Random(n)
        while True:
            r = await client.post(
                "/leases",
                json={
                    "worker_id": f"w{n}",
                    "types": [TYPE],
                    "wait_seconds": 0.2,
                    "lease_seconds": 1,
                },
            )
            assert r.status_code == 200, r.text
            for grant in r.json()["leases"]:
                await run(client, grant, rng)
            if not submitting.is_set() and not r.json()["leases"] and await done(client):
                return

    async def run(client: httpx.AsyncClient, grant: dict[str, Any], rng: random.Random) -> None:
        lease_id = grant["lease_id"]
        leased.set()
        while True:
            hb = await client.post(
                f"/leases/{lease_id}/heartbeat", json={"state": {"seen": grant["task"]["id"]}}
            )
            if hb.status_code == 410:
                return  # expired while we dawdled: the server completed the cancel itself
            assert hb.status_code == 200, hb.text
            if hb.json()["cancel"] is not None:
                if rng.random() < 0.2:
                    return  # crash in on_cancel: the lease must expire instead
                ack = await client.post(f"/leases/{lease_id}/cancelled")
                assert ack.status_code in (200, 410), ack.text
                return
            if not submitting.is_set():
                r = await client.post(f"/leases/{lease_id}/complete", json={"result": "ok"})
                assert r.status_code in (200, 409), r.text
                if r.status_code == 200:
                    return
            else:
                await asyncio.sleep(0.02)

    async def done(client: httpx.AsyncClient) -> bool:
        r = await client.get("/tasks", params={"type": TYPE, "limit": 1000})
        statuses = {t["status"] for t in r.json()["tasks"]}
        return statuses <= {"completed", "superseded"}

    workers = [asyncio.create_task(worker(n)) for n in range(4)]
    # A first task leased before the storm, so that at least one held lease is revoked
    # whatever the timing (without it a fast storm could supersede only pending tasks).
    first = await a.client.post(
        "/tasks", json={"type": TYPE, "dedup_key": KEY, "on_duplicate": "supersede"}
    )
    assert first.status_code == 201, first.text
    await asyncio.wait_for(leased.wait(), timeout=10)
    await asyncio.gather(*(submitter(n) for n in range(6)))
    submitting.clear()
    await asyncio.wait_for(asyncio.gather(*workers), timeout=60)

    tasks = (await a.client.get("/tasks", params={"type": TYPE, "limit": 1000})).json()["tasks"]
    assert len(tasks) == 6 * 12 + 1
    survivors = [t for t in tasks if t["status"] != "superseded"]
    assert len(survivors) == 1, [(t["id"], t["status"]) for t in survivors]
    (survivor,) = survivors
    assert survivor["status"] == "completed"
    by_id = {t["id"]: t for t in tasks}
    for task in tasks:
        current = task
        for _ in range(len(tasks)):
            if current["superseded_by"] is None:
                break
            current = by_id[current["superseded_by"]]
        assert current["id"] == survivor["id"]

    grants = assert_one_lease_at_a_time(await _key_history(db_url))
    assert grants >= 2  # the workers really held leases that got revoked


async def test_supersede_racing_the_old_workers_complete(make_server: ServerFactory) -> None:
    a, b = await make_server(), await make_server()
    for i in range(15):
        key = f"race-complete-{i}"
        r = await a.client.post("/tasks", json={"type": TYPE, "dedup_key": key})
        old = r.json()["task"]
        (held,) = await lease(a.client, types=[TYPE])
        finish, replace = await asyncio.gather(
            b.client.post(f"/leases/{held['lease_id']}/complete", json={"result": "old"}),
            a.client.post(
                "/tasks", json={"type": TYPE, "dedup_key": key, "on_duplicate": "supersede"}
            ),
        )
        new = replace.json()["task"]
        old_now = await get_task(a.client, old["id"])
        if finish.status_code == 200:  # the worker finished first: a fresh task, no wait
            assert old_now["status"] == "completed"
            assert replace.json()["outcome"] == "created"
            assert new["status"] == "pending"
        else:  # the supersede won: the old result is refused, the new one waits for the ack
            assert finish.status_code == 409
            assert old_now["status"] == "cancelling"
            assert replace.json()["outcome"] == "superseded"
            assert new["status"] == "blocked"
            await a.client.post(f"/leases/{held['lease_id']}/cancelled")
        (grant,) = await lease(b.client, types=[TYPE])
        assert grant["task"]["id"] == new["id"]
        await b.client.post(f"/leases/{grant['lease_id']}/complete", json={})


async def test_supersede_racing_cancel_and_expiry(make_server: ServerFactory) -> None:
    a, b = await make_server(), await make_server()
    for i in range(15):
        key = f"race-cancel-{i}"
        old = (await a.client.post("/tasks", json={"type": TYPE, "dedup_key": key})).json()
        assert len(await lease(a.client, types=[TYPE], lease_seconds=0.3)) == 1
        cancel, replace = await asyncio.gather(
            b.client.post(f"/tasks/{old['task']['id']}/cancel"),
            a.client.post(
                "/tasks", json={"type": TYPE, "dedup_key": key, "on_duplicate": "supersede"}
            ),
        )
        assert cancel.status_code == 200, cancel.text
        assert replace.status_code == 201, replace.text
        new = replace.json()["task"]
        # Nobody acknowledges: the revoked lease expires and the replacement is released.
        leases = await eventually(
            lambda: lease(b.client, types=[TYPE]), lambda got: len(got) == 1, timeout=10
        )
        assert leases[0]["task"]["id"] == new["id"]
        assert (await get_task(a.client, old["task"]["id"]))["status"] in (
            "cancelled",
            "superseded",
        )
        await b.client.post(f"/leases/{leases[0]['lease_id']}/complete", json={})


async def test_supersede_racing_a_childs_completion(make_server: ServerFactory) -> None:
    a, b = await make_server(), await make_server()
    for i in range(15):
        key = f"race-child-{i}"
        parent = (await a.client.post("/tasks", json={"type": TYPE, "dedup_key": key})).json()
        (p,) = await lease(a.client, types=[TYPE])
        await a.client.post("/tasks", json={"type": "part", "parent_id": parent["task"]["id"]})
        (c,) = await lease(a.client, types=["part"])
        await a.client.post(f"/leases/{p['lease_id']}/complete", json={})  # parent waits
        done, replace = await asyncio.gather(
            b.client.post(f"/leases/{c['lease_id']}/complete", json={}),
            a.client.post(
                "/tasks", json={"type": TYPE, "dedup_key": key, "on_duplicate": "supersede"}
            ),
        )
        assert replace.status_code == 201, replace.text
        if done.status_code == 409:  # the cascade revoked the child first: acknowledge
            await b.client.post(f"/leases/{c['lease_id']}/cancelled")
        else:
            assert done.status_code == 200, done.text
        new = replace.json()["task"]
        # Whichever came first (the child's completion making the parent pending for its
        # finalize, or the supersede finding it waiting), the parent's execute phase had
        # ended: its on_cancel runs first, in a lease of its own, then the replacement.
        hooks = await eventually(
            lambda: lease(b.client, types=[TYPE]), lambda got: len(got) == 1, timeout=10
        )
        assert (hooks[0]["task"]["id"], hooks[0]["phase"]) == (parent["task"]["id"], "cancel")
        assert (await b.client.post(f"/leases/{hooks[0]['lease_id']}/cancelled")).is_success
        leases = await eventually(
            lambda: lease(b.client, types=[TYPE]), lambda got: len(got) == 1, timeout=10
        )
        assert leases[0]["task"]["id"] == new["id"]
        assert leases[0]["phase"] == "execute"
        assert (await get_task(a.client, parent["task"]["id"]))["status"] == "superseded"
        await b.client.post(f"/leases/{leases[0]['lease_id']}/complete", json={})
