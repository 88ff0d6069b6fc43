"""on_duplicate=supersede for every holder status, state handoff, chains (SPEC §4)."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from tests.helpers import eventually, get_task, lease, submit

KEY = {"type": "transfer", "dedup_key": "s3://b/file"}


async def supersede(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await client.post("/tasks", json={**KEY, "on_duplicate": "supersede", **fields})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_pending_holder_is_replaced_in_place(client: httpx.AsyncClient) -> None:
    first = await submit(client, type="other", priority=5)
    old = await submit(client, **KEY, payload={"v": 1}, priority=200)
    later = await submit(client, type="other", priority=200)
    answer = await supersede(client, payload={"v": 2}, priority=200, tags={"k": "v"})
    new = answer["task"]
    assert answer["outcome"] == "superseded"
    assert answer["replaced_task_id"] == old["id"]
    assert new["id"] != old["id"]
    assert (new["status"], new["supersedes"], new["attempt"]) == ("pending", old["id"], 0)
    gone = await get_task(client, old["id"])
    assert (gone["status"], gone["superseded_by"]) == ("superseded", new["id"])
    # Same queue position: ahead of `later`, which was submitted after the original.
    order = [x["task"]["id"] for x in await lease(client, n=10)]
    assert order == [first["id"], new["id"], later["id"]]


async def test_running_holder_is_revoked_and_replacement_waits(client: httpx.AsyncClient) -> None:
    old = await submit(client, **KEY, payload={"v": 1})
    (held,) = await lease(client)
    hb = await client.post(
        f"/leases/{held['lease_id']}/heartbeat", json={"state": {"upload": "u1"}}
    )
    assert hb.json()["cancel"] is None

    new = (await supersede(client, payload={"v": 2}))["task"]
    assert (new["status"], new["blocked_on"]) == ("blocked", old["id"])
    assert (await get_task(client, old["id"]))["status"] == "cancelling"
    assert await lease(client) == []  # never two leased tasks for one key

    hb = await client.post(f"/leases/{held['lease_id']}/heartbeat", json={})
    assert hb.json()["cancel"] == {"reason": "superseded", "superseded_by": new["id"]}
    late = await client.post(f"/leases/{held['lease_id']}/complete", json={"result": 1})
    assert late.status_code == 409
    ack = await client.post(f"/leases/{held['lease_id']}/cancelled")
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "superseded"

    (grant,) = await lease(client)
    assert grant["task"]["id"] == new["id"]
    assert grant["task"]["previous_state"] == {"upload": "u1"}


async def test_revoked_lease_that_expires_completes_the_cancel(client: httpx.AsyncClient) -> None:
    old = await submit(client, **KEY)
    await lease(client, lease_seconds=0.3)
    new = (await supersede(client))["task"]

    async def status() -> str:
        return str((await get_task(client, old["id"]))["status"])

    await eventually(status, lambda s: s == "superseded")
    leases = await eventually(lambda: lease(client), lambda x: len(x) == 1)
    assert leases[0]["task"]["id"] == new["id"]


async def test_chain_of_supersedes_keeps_blocking_and_hands_state(
    client: httpx.AsyncClient,
) -> None:
    original = await submit(client, **KEY)
    (held,) = await lease(client)
    await client.patch(f"/leases/{held['lease_id']}/state", json={"state": {"part": 3}})
    b = (await supersede(client, payload=2))["task"]
    c = await supersede(client, payload=3)
    d = await supersede(client, payload=4)
    assert c["replaced_task_id"] == b["id"]
    assert d["task"]["status"] == "blocked"
    assert d["task"]["blocked_on"] == original["id"]
    assert (await get_task(client, c["task"]["id"]))["superseded_by"] == d["task"]["id"]
    await client.post(f"/leases/{held['lease_id']}/cancelled")
    (grant,) = await lease(client)
    assert grant["task"]["id"] == d["task"]["id"]
    assert grant["task"]["payload"] == 4
    assert grant["task"]["previous_state"] == {"part": 3}
    # the chain from the original ends at the survivor
    chain, current = [], original["id"]
    while current:
        chain.append(current)
        current = (await get_task(client, current))["superseded_by"]
    assert chain == [original["id"], b["id"], c["task"]["id"], d["task"]["id"]]


async def test_supersede_without_holder_creates(client: httpx.AsyncClient) -> None:
    answer = await supersede(client)
    assert answer["outcome"] == "created"
    assert "replaced_task_id" not in answer  # only a supersede names one


async def test_cancel_running_task_then_new_submit_waits_for_it(client: httpx.AsyncClient) -> None:
    old = await submit(client, **KEY)
    (held,) = await lease(client)
    r = await client.post(f"/tasks/{old['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelling"
    # the key is free, but the new holder waits until the old run acknowledged
    fresh = await submit(client, **KEY)
    assert fresh["id"] != old["id"]
    assert (fresh["status"], fresh["blocked_on"]) == ("blocked", old["id"])
    hb = await client.post(f"/leases/{held['lease_id']}/heartbeat", json={})
    assert hb.json()["cancel"] == {"reason": "cancelled"}
    await client.post(f"/leases/{held['lease_id']}/cancelled")
    assert (await get_task(client, old["id"]))["status"] == "cancelled"
    assert (await get_task(client, fresh["id"]))["status"] == "pending"


async def test_supersede_inside_a_batch_applies_in_order(client: httpx.AsyncClient) -> None:
    holder = await submit(client, **KEY, payload=0, tags={"v": "0"})
    items = [
        {**KEY, "on_duplicate": "supersede", "payload": 1},
        {"type": "other"},
        {**KEY, "on_duplicate": "supersede", "payload": 2},
        {**KEY, "payload": 3},  # skip: deduplicated against the latest
    ]
    r = await client.post("/tasks/batch", json={"tasks": items})
    assert r.status_code == 200, r.text
    first, other, second, skipped = r.json()["results"]
    assert (first["outcome"], first["replaced_task_id"]) == ("superseded", holder["id"])
    assert other["outcome"] == "created"
    assert (second["outcome"], second["replaced_task_id"]) == ("superseded", first["task"]["id"])
    assert (skipped["outcome"], skipped["task"]["id"]) == ("deduplicated", second["task"]["id"])
    (grant,) = await lease(client, types=[KEY["type"]])
    assert grant["task"]["payload"] == 2


async def test_supersede_events_name_both_tasks_and_carry_the_old_tags(
    client: httpx.AsyncClient, db_url: str
) -> None:
    old = await submit(client, **KEY, tags={"profile": "dr"})
    new = (await supersede(client, tags={"profile": "new"}))["task"]
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT task_id, tags::text, data::text FROM events WHERE event = 'task.superseded'"
        )
    finally:
        await conn.close()
    assert row is not None
    assert row["task_id"] == old["id"]
    assert '"profile": "dr"' in row["tags"]
    assert new["id"] in row["data"]
