"""Group commit over HTTP: concurrent single calls share statements, yet each call gets
exactly the answer it would have got alone (app/domain/coalesce.py)."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx

from tests.conftest import ServerFactory
from tests.helpers import lease

TYPE = "group-commit"


async def test_concurrent_single_submits_each_get_their_own_task_and_event(
    make_server: ServerFactory, db_url: str
) -> None:
    server = await make_server()
    answers = await asyncio.gather(
        *(
            server.client.post("/tasks", json={"type": TYPE, "payload": {"i": i}})
            for i in range(200)
        )
    )
    assert all(r.status_code == 201 for r in answers), [r.text for r in answers][:3]
    tasks = [r.json()["task"] for r in answers]
    assert sorted(t["payload"]["i"] for t in tasks) == list(range(200))  # each its own
    assert len({t["id"] for t in tasks}) == 200
    conn = await asyncpg.connect(db_url)
    try:
        created = await conn.fetch(
            "SELECT task_id FROM events WHERE event = 'task.created' AND type = $1", TYPE
        )
        statements = await conn.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM tasks WHERE type = $1", TYPE
        )
    finally:
        await conn.close()
    assert Counter(r["task_id"] for r in created) == Counter(t["id"] for t in tasks)
    # Batches really formed: fewer transactions than submits (one per row would be 200).
    assert statements < 200


async def test_concurrent_completions_answer_exactly_even_for_one_lease_named_many_times(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    client = server.client
    r = await client.post(
        "/tasks/batch", json={"tasks": [{"type": TYPE, "payload": {"i": i}} for i in range(40)]}
    )
    assert r.status_code == 200
    grants = await lease(client, 40, types=[TYPE])
    assert len(grants) == 40
    twice = grants[0]["lease_id"]  # sent three times at once: one success, two 409s
    task_id, _, token = twice.partition(".")
    wrong = f"{grants[1]['task']['id']}.{'0' * 8}-0000-4000-8000-{'0' * 12}"  # not the lease

    async def complete(lease_id: str) -> httpx.Response:
        return await client.post(f"/leases/{lease_id}/complete", json={"result": lease_id})

    calls = [g["lease_id"] for g in grants] + [twice, twice, wrong]
    answers = await asyncio.gather(*(complete(lease_id) for lease_id in calls))
    by_call = list(zip(calls, answers, strict=True))
    for lease_id, answer in by_call:
        if lease_id not in (twice, wrong):
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "completed"
            assert answer.json()["result"] == lease_id  # its own result, not a neighbour's
    repeated = Counter(a.status_code for lease_id, a in by_call if lease_id == twice)
    assert repeated == Counter({200: 1, 409: 2})
    assert all(a.status_code in (404, 410) for lease_id, a in by_call if lease_id == wrong)
    final = await client.get(f"/tasks/{task_id}")
    assert final.json()["status"] == "completed" and token
