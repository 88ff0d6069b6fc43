"""Races that really race: two app instances on one database, many concurrent clients."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import asyncpg
import httpx

from tests.conftest import ServerFactory
from tests.helpers import eventually, lease

TASKS = 3000


async def _seed(client: httpx.AsyncClient, n: int, **fields: object) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 500):
        batch = [{"type": "race", "payload": {"i": i}, **fields} for i in range(start, start + 500)]
        r = await client.post("/tasks/batch", json={"tasks": batch[: n - start]})
        assert r.status_code == 200, r.text
        ids += [res["task"]["id"] for res in r.json()["results"]]
    return ids


async def test_two_replicas_many_workers_complete_every_task_exactly_once(
    make_server: ServerFactory, db_url: str
) -> None:
    a, b = await make_server(), await make_server()
    ids = await _seed(a.client, TASKS)
    granted: Counter[str] = Counter()
    completed: Counter[str] = Counter()

    async def worker(client: httpx.AsyncClient, name: str, batch: int) -> None:
        while True:
            r = await client.post(
                "/leases", json={"worker_id": name, "max_tasks": batch, "wait_seconds": 0}
            )
            assert r.status_code == 200, r.text
            leases = r.json()["leases"]
            if not leases:
                return
            granted.update(x["task"]["id"] for x in leases)
            if batch == 1:
                (only,) = leases
                r = await client.post(f"/leases/{only['lease_id']}/complete", json={})
                assert r.status_code == 200, r.text
                completed[only["task"]["id"]] += 1
            else:
                items = [{"lease_id": x["lease_id"], "result": name} for x in leases]
                r = await client.post("/leases/complete", json={"items": items})
                assert r.status_code == 200, r.text
                for res in r.json()["results"]:
                    assert res["ok"], res
                    completed[res["task"]["id"]] += 1

    loops = [
        worker(client, f"{label}-{i}", batch)
        for (label, client), (i, batch) in itertools.product(
            (("a", a.client), ("b", b.client)), enumerate((1, 1, 7, 50))
        )
    ]
    await asyncio.gather(*loops)

    assert set(granted) == set(ids)
    assert max(granted.values()) == 1, "a task was leased twice"
    assert completed == Counter({i: 1 for i in ids})
    conn = await asyncpg.connect(db_url)
    try:
        statuses = await conn.fetch("SELECT status, count(*) FROM tasks GROUP BY status")
        assert {r["status"]: r["count"] for r in statuses} == {"completed": TASKS}
        events = await conn.fetchval("SELECT count(*) FROM events WHERE event = 'task.completed'")
        assert events == TASKS
    finally:
        await conn.close()


async def test_concurrent_first_submits_of_one_key_create_one_task(
    make_server: ServerFactory,
) -> None:
    a, b = await make_server(), await make_server()
    body = {"type": "sync", "dedup_key": "s3://bucket/file", "payload": {}}

    async def one(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/tasks", json=body)

    answers = await asyncio.gather(*(one(c) for c in [a.client, b.client] * 20))
    assert sorted(r.status_code for r in answers) == [200] * 39 + [201]
    assert len({r.json()["task"]["id"] for r in answers}) == 1
    listing = (await a.client.get("/tasks")).json()["tasks"]
    assert len(listing) == 1


async def test_expired_lease_late_complete_changes_nothing(
    make_server: ServerFactory,
) -> None:
    a, b = await make_server(), await make_server()
    r = await a.client.post("/tasks", json={"type": "slow", "retry": {"max_attempts": 5}})
    task_id = r.json()["task"]["id"]
    (old,) = await lease(a.client, lease_seconds=0.2, worker_id="stale")

    # The sweepers of both replicas race to expire it; then another worker takes it.
    async def relet() -> list[dict[str, object]]:
        return await lease(b.client, worker_id="fresh")

    (new,) = await eventually(relet, lambda leases: len(leases) == 1)
    assert new["task"]["id"] == task_id
    assert new["task"]["attempt"] == 2
    before = (await a.client.get(f"/tasks/{task_id}")).json()

    late = await a.client.post(f"/leases/{old['lease_id']}/complete", json={"result": "stale"})
    assert late.status_code == 410
    assert late.headers["content-type"].startswith("application/problem+json")
    late_fail = await b.client.post(f"/leases/{old['lease_id']}/fail", json={"error": "x"})
    assert late_fail.status_code == 410
    assert (await a.client.get(f"/tasks/{task_id}")).json() == before

    ok = await b.client.post(f"/leases/{new['lease_id']}/complete", json={"result": "fresh"})
    assert ok.status_code == 200
    done = (await a.client.get(f"/tasks/{task_id}")).json()
    assert (done["status"], done["result"], done["attempt"]) == ("completed", "fresh", 2)


async def test_two_sweepers_expire_each_lease_once(make_server: ServerFactory, db_url: str) -> None:
    a, b = await make_server(), await make_server()
    ids = await _seed(a.client, 400, retry={"max_attempts": 3})
    leases = await lease(a.client, n=400, lease_seconds=0.3)
    assert len(leases) == 400

    async def pending() -> int:
        r = await b.client.get("/tasks", params={"status": "pending", "limit": 1000})
        return len(r.json()["tasks"])

    await eventually(pending, lambda n: n == 400)
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT task_id, count(*) AS n FROM events WHERE event = 'lease.expired'"
            " GROUP BY task_id"
        )
        assert {r["task_id"]: r["n"] for r in rows} == {i: 1 for i in ids}
        attempts = await conn.fetchval("SELECT array_agg(DISTINCT attempt) FROM tasks")
        assert attempts == [1]
    finally:
        await conn.close()
