"""Groups (SPEC §2, §5, §11): concurrency limits without head-of-line blocking, pause and
resume, settings that keep omitted fields, counts, and the limit under a real race."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.conftest import Server, ServerFactory
from tests.helpers import eventually, get_task, lease, submit


async def put_group(client: httpx.AsyncClient, name: str, **body: Any) -> dict[str, Any]:
    r = await client.put(f"/groups/{name}", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def groups_by_name(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await client.get("/groups")
    assert r.status_code == 200, r.text
    return {g["name"]: g for g in r.json()["groups"]}


async def seed(client: httpx.AsyncClient, n: int, **fields: Any) -> list[str]:
    r = await client.post("/tasks/batch", json={"tasks": [{"type": "job", **fields}] * n})
    assert r.status_code == 200, r.text
    return [x["task"]["id"] for x in r.json()["results"]]


async def running_in(db_url: str, group: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE group_name = $1"
            " AND status IN ('running', 'cancelling')",
            group,
        )
    finally:
        await conn.close()
    return n


async def in_flight(server: Server) -> None:
    """Wait until the server is handling a request (a long poll just sent)."""

    async def count() -> int:
        return len(server.uvicorn.server_state.tasks)

    await eventually(count, lambda n: n > 0)


async def complete(client: httpx.AsyncClient, grant: dict[str, Any]) -> None:
    r = await client.post(f"/leases/{grant['lease_id']}/complete", json={})
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------------------
# Concurrency limits


async def test_max_concurrency_one_without_head_of_line_blocking(
    client: httpx.AsyncClient,
) -> None:
    group = await put_group(client, "narrow", max_concurrency=1)
    assert group == {
        "name": "narrow",
        "max_concurrency": 1,
        "paused": False,
        "running": 0,
        "pending": 0,
    }
    narrow = await seed(client, 20, group="narrow", priority=0)
    other = await submit(client, group="wide", priority=200)
    loose = await submit(client, priority=250)

    (first,) = await lease(client)
    assert first["task"]["id"] == narrow[0]
    # The narrow group is full: the lower-priority tasks elsewhere are leased, in order.
    (second,) = await lease(client)
    assert second["task"]["id"] == other["id"]
    (third,) = await lease(client)
    assert third["task"]["id"] == loose["id"]
    assert await lease(client, n=10) == []

    await complete(client, first)
    (fourth,) = await lease(client, n=10)
    assert fourth["task"]["id"] == narrow[1]
    assert await lease(client, n=10) == []


async def test_a_full_group_does_not_shrink_a_multi_task_lease(client: httpx.AsyncClient) -> None:
    await put_group(client, "narrow", max_concurrency=1)
    narrow = await seed(client, 20, group="narrow", priority=0)
    others = await seed(client, 3, group="wide", priority=100)
    # One call for 5 tasks: one from the narrow group, then the others, skipping the rest
    # of the narrow group.
    leases = await lease(client, n=5)
    assert [x["task"]["id"] for x in leases] == [narrow[0], *others]


async def test_max_concurrency_two_in_one_lease_call(
    client: httpx.AsyncClient, db_url: str
) -> None:
    await put_group(client, "pair", max_concurrency=2)
    ids = await seed(client, 10, group="pair")
    leases = await lease(client, n=10)
    assert [x["task"]["id"] for x in leases] == ids[:2]
    assert await lease(client, n=10) == []
    assert await running_in(db_url, "pair") == 2
    # Raising the limit admits more at once.
    assert (await put_group(client, "pair", max_concurrency=5))["max_concurrency"] == 5
    more = await lease(client, n=10)
    assert [x["task"]["id"] for x in more] == ids[2:5]
    # Lowering it below the running count admits nothing until enough finish.
    await put_group(client, "pair", max_concurrency=3)
    for grant in leases:
        assert await lease(client, n=10) == []
        await complete(client, grant)
    assert await running_in(db_url, "pair") == 3
    assert await lease(client, n=10) == []
    await complete(client, more[0])
    assert [x["task"]["id"] for x in await lease(client, n=10)] == ids[5:6]
    assert await running_in(db_url, "pair") == 3


async def test_null_max_concurrency_means_unlimited(client: httpx.AsyncClient) -> None:
    await put_group(client, "g", max_concurrency=1)
    ids = await seed(client, 6, group="g")
    assert len(await lease(client, n=10)) == 1
    group = await put_group(client, "g", max_concurrency=None)
    assert group["max_concurrency"] is None
    assert [x["task"]["id"] for x in await lease(client, n=10)] == ids[1:]


async def test_omitted_fields_keep_their_value(client: httpx.AsyncClient) -> None:
    assert (await put_group(client, "keep", max_concurrency=4))["paused"] is False
    g = await put_group(client, "keep", paused=True)
    assert (g["max_concurrency"], g["paused"]) == (4, True)
    g = await put_group(client, "keep")
    assert (g["max_concurrency"], g["paused"]) == (4, True)
    g = await put_group(client, "keep", max_concurrency=7)
    assert (g["max_concurrency"], g["paused"]) == (7, True)
    g = await put_group(client, "keep", paused=False)
    assert (g["max_concurrency"], g["paused"]) == (7, False)
    g = await put_group(client, "keep", max_concurrency=None)
    assert (g["max_concurrency"], g["paused"]) == (None, False)
    listed = (await groups_by_name(client))["keep"]
    assert (listed["max_concurrency"], listed["paused"]) == (None, False)


async def test_invalid_group_settings_are_422_and_change_nothing(
    client: httpx.AsyncClient,
) -> None:
    await put_group(client, "strict", max_concurrency=2)
    for body in (
        {"max_concurrency": 0},
        {"max_concurrency": -1},
        {"max_concurrency": "two"},
        {"paused": "maybe"},
        {"paused": None, "nope": 1},
    ):
        r = await client.put("/groups/strict", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    g = (await groups_by_name(client))["strict"]
    assert (g["max_concurrency"], g["paused"]) == (2, False)


# ---------------------------------------------------------------------------------------
# Pause and resume


async def test_pause_and_resume(client: httpx.AsyncClient, db_url: str) -> None:
    held = await seed(client, 3, group="media", priority=0)
    (running,) = await lease(client, groups=["media"])
    other = await submit(client, group="docs", priority=100)

    g = await put_group(client, "media", paused=True)
    assert g["paused"] is True
    for task_id in held[1:]:
        assert (await get_task(client, task_id))["status"] == "paused"
    # The running task goes on; nothing else of the group is leased; other groups are.
    assert (await get_task(client, running["task"]["id"]))["status"] == "running"
    (got,) = await lease(client, n=10)
    assert got["task"]["id"] == other["id"]
    late = await submit(client, group="media", priority=0)
    assert late["status"] == "paused"
    assert await lease(client, n=10) == []
    assert await lease(client, n=10, groups=["media"]) == []
    await complete(client, running)
    assert await lease(client, n=10) == []
    counts = (await groups_by_name(client))["media"]
    assert (counts["paused"], counts["running"], counts["pending"]) == (True, 0, 3)

    g = await put_group(client, "media", paused=False)
    assert (g["paused"], g["pending"]) == (False, 3)
    for task_id in [*held[1:], late["id"]]:
        assert (await get_task(client, task_id))["status"] == "pending"
    assert [x["task"]["id"] for x in await lease(client, n=10)] == [*held[1:], late["id"]]

    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT event, data FROM events WHERE group_name = 'media' AND task_id IS NULL"
            " ORDER BY id"
        )
    finally:
        await conn.close()
    assert [r["event"] for r in rows] == ["group.paused", "group.resumed"]
    assert [json.loads(r["data"])["tasks"] for r in rows] == [2, 3]


async def test_pausing_twice_and_resuming_an_unpaused_group_write_no_events(
    client: httpx.AsyncClient, db_url: str
) -> None:
    await seed(client, 2, group="calm")
    await put_group(client, "calm", paused=False)
    await put_group(client, "calm", paused=True)
    await put_group(client, "calm", paused=True)
    conn = await asyncpg.connect(db_url)
    try:
        events = await conn.fetch("SELECT event FROM events WHERE event LIKE 'group.%' ORDER BY id")
    finally:
        await conn.close()
    assert [r["event"] for r in events] == ["group.paused"]


async def test_paused_group_holds_scheduled_tasks_that_become_due(
    client: httpx.AsyncClient,
) -> None:
    await put_group(client, "later", paused=True)
    at = datetime.now(UTC) + timedelta(seconds=0.5)
    task = await submit(client, group="later", run_after=at.isoformat())
    assert task["status"] == "scheduled"

    async def status() -> str:
        s: str = (await get_task(client, task["id"]))["status"]
        return s

    await eventually(status, lambda s: s == "paused")
    assert await lease(client) == []
    await put_group(client, "later", paused=False)
    assert [x["task"]["id"] for x in await lease(client)] == [task["id"]]


async def test_a_failed_retry_or_release_into_a_paused_group_stays_paused(
    client: httpx.AsyncClient,
) -> None:
    a, b = await seed(client, 2, group="p", retry={"max_attempts": 3, "base_seconds": 0})
    la, lb = await lease(client, n=2)
    await put_group(client, "p", paused=True)
    r = await client.post(f"/leases/{la['lease_id']}/fail", json={"error": "x"})
    assert r.json()["status"] == "paused"
    r = await client.post(f"/leases/{lb['lease_id']}/release")
    assert r.json()["status"] == "paused"
    assert await lease(client, n=10) == []
    await put_group(client, "p", paused=False)
    assert {x["task"]["id"] for x in await lease(client, n=10)} == {a, b}


# ---------------------------------------------------------------------------------------
# Listing and names


async def test_get_groups_counts(client: httpx.AsyncClient) -> None:
    await put_group(client, "configured", max_concurrency=3)
    await seed(client, 4, group="busy")
    await seed(client, 2, group="other")
    grants = await lease(client, n=3, groups=["busy"])
    await complete(client, grants[0])
    groups = await groups_by_name(client)
    assert groups["configured"] == {
        "name": "configured",
        "max_concurrency": 3,
        "paused": False,
        "running": 0,
        "pending": 0,
    }
    assert (groups["busy"]["running"], groups["busy"]["pending"]) == (2, 1)
    assert groups["busy"]["max_concurrency"] is None
    assert (groups["other"]["running"], groups["other"]["pending"]) == (0, 2)
    for grant in grants[1:]:
        await complete(client, grant)
    await lease(client, n=10, groups=["other"])
    groups = await groups_by_name(client)
    assert (groups["busy"]["running"], groups["busy"]["pending"]) == (0, 1)
    assert (groups["other"]["running"], groups["other"]["pending"]) == (2, 0)
    r = await client.get("/groups")
    names = [g["name"] for g in r.json()["groups"]]
    assert names == sorted(names)


async def test_group_names_with_slashes(client: httpx.AsyncClient) -> None:
    name = "tenant/acme/uploads"
    g = await put_group(client, name, max_concurrency=1)
    assert g["name"] == name
    ids = await seed(client, 3, group=name)
    task = await get_task(client, ids[0])
    assert task["group"] == name
    leases = await lease(client, n=10, groups=[name])
    assert [x["task"]["id"] for x in leases] == ids[:1]
    assert leases[0]["task"]["group"] == name
    g = await put_group(client, name, paused=True)
    assert (g["name"], g["max_concurrency"], g["paused"], g["running"], g["pending"]) == (
        name,
        1,
        True,
        1,
        2,
    )
    # An encoded slash names the same group.
    r = await client.put("/groups/tenant%2Facme%2Fuploads", json={"paused": False})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == name
    assert r.json()["max_concurrency"] == 1
    assert (await groups_by_name(client))[name]["paused"] is False
    assert "tenant" not in await groups_by_name(client)


# ---------------------------------------------------------------------------------------
# The limit under a real race


async def test_concurrency_limit_holds_across_two_replicas(
    make_server: ServerFactory, db_url: str
) -> None:
    a, b = await make_server(), await make_server()
    clients = [a.client, b.client]
    await put_group(a.client, "limited", max_concurrency=2)
    limited = await seed(a.client, 60, group="limited", priority=0)
    free = await seed(b.client, 60, group="free", priority=10)
    rng = random.Random(7)

    async def grab(i: int) -> list[dict[str, Any]]:
        return await lease(clients[i % 2], n=rng.randint(1, 6), worker_id=f"w{i}")

    # Waves of concurrent lease calls while the limited group's slots are held: the
    # limited group is granted at most its two slots per wave, never more.
    for _ in range(5):
        waves = await asyncio.gather(*(grab(i) for i in range(24)))
        granted = [x for wave in waves for x in wave]
        ids = [x["task"]["id"] for x in granted]
        assert len(ids) == len(set(ids)), "a task was leased twice"
        in_limited = [x for x in granted if x["task"]["group"] == "limited"]
        assert len(in_limited) <= 2
        assert await running_in(db_url, "limited") == len(in_limited)
        # Every caller may have found the group's rows locked by another: top up, and
        # the slots are then exactly full.
        top_up = await lease(a.client, n=10, groups=["limited"])
        assert len(in_limited) + len(top_up) == 2
        assert await running_in(db_url, "limited") == 2
        assert await lease(b.client, n=10, groups=["limited"]) == []
        await asyncio.gather(*(complete(clients[k % 2], x) for k, x in enumerate(granted + top_up)))

    # Then workers that lease and complete in a loop, on both replicas, while a probe
    # watches the database.
    done = asyncio.Event()
    peak = 0
    completed: Counter[str] = Counter()

    async def probe() -> None:
        nonlocal peak
        conn = await asyncpg.connect(db_url)
        try:
            while not done.is_set():
                n = await conn.fetchval(
                    "SELECT count(*) FROM tasks WHERE group_name = 'limited'"
                    " AND status IN ('running', 'cancelling')"
                )
                peak = max(peak, n)
                await asyncio.sleep(0)
        finally:
            await conn.close()

    async def worker(i: int) -> None:
        client = clients[i % 2]
        while True:
            r = await client.post(
                "/leases",
                json={"worker_id": f"loop{i}", "max_tasks": 1 + i % 4, "wait_seconds": 0},
            )
            assert r.status_code == 200, r.text
            grants = r.json()["leases"]
            if not grants:
                r = await client.get("/tasks", params={"status": "pending", "limit": 1})
                if not r.json()["tasks"]:
                    return
                continue
            for grant in grants:
                await complete(client, grant)
                completed[grant["task"]["id"]] += 1

    watcher = asyncio.create_task(probe())
    try:
        await asyncio.gather(*(worker(i) for i in range(12)))
    finally:
        done.set()
        await watcher
    assert 1 <= peak <= 2
    conn = await asyncpg.connect(db_url)
    try:
        statuses = await conn.fetch(
            "SELECT group_name, status, count(*) AS n FROM tasks GROUP BY 1, 2"
        )
        leased = await conn.fetch(
            "SELECT task_id, count(*) AS n FROM events WHERE event = 'task.leased' GROUP BY 1"
        )
    finally:
        await conn.close()
    assert {(r["group_name"], r["status"]): r["n"] for r in statuses} == {
        ("limited", "completed"): 60,
        ("free", "completed"): 60,
    }
    assert all(r["n"] == 1 for r in leased)
    assert {r["task_id"] for r in leased} == set(limited) | set(free)
    assert max(completed.values()) == 1


async def test_a_freed_slot_wakes_a_long_poll(make_server: ServerFactory) -> None:
    # The fallback re-check is far away: only a NOTIFY can end the wait early.
    server = await make_server(poll_fallback_seconds=30)
    client = server.client
    await put_group(client, "one", max_concurrency=1)
    first, second = await seed(client, 2, group="one")
    (grant,) = await lease(client)
    assert grant["task"]["id"] == first
    poll = asyncio.create_task(client.post("/leases", json={"worker_id": "w2", "wait_seconds": 20}))
    await in_flight(server)
    await complete(client, grant)
    r = await asyncio.wait_for(poll, timeout=10)
    assert [x["task"]["id"] for x in r.json()["leases"]] == [second]


async def test_raising_a_limit_wakes_a_long_poll(make_server: ServerFactory) -> None:
    server = await make_server(poll_fallback_seconds=30)
    client = server.client
    await put_group(client, "grow", max_concurrency=1)
    first, second = await seed(client, 2, group="grow")
    (grant,) = await lease(client)
    assert grant["task"]["id"] == first
    poll = asyncio.create_task(client.post("/leases", json={"worker_id": "w2", "wait_seconds": 20}))
    await in_flight(server)
    await put_group(client, "grow", max_concurrency=2)
    r = await asyncio.wait_for(poll, timeout=10)
    assert [x["task"]["id"] for x in r.json()["leases"]] == [second]


async def test_a_failed_or_expired_lease_frees_its_slot_for_a_long_poll(
    make_server: ServerFactory,
) -> None:
    server = await make_server(poll_fallback_seconds=30)
    client = server.client
    await put_group(client, "one", max_concurrency=1)
    ids = await seed(client, 3, group="one", retry={"max_attempts": 1})
    (grant,) = await lease(client, lease_seconds=0.3)
    # The lease expires (attempts used up: the task fails) and the next one is granted.
    r = await asyncio.wait_for(
        client.post("/leases", json={"worker_id": "w2", "wait_seconds": 20}), timeout=10
    )
    (second,) = r.json()["leases"]
    assert second["task"]["id"] == ids[1]
    assert (await get_task(client, grant["task"]["id"]))["status"] == "failed"
    poll = asyncio.create_task(client.post("/leases", json={"worker_id": "w3", "wait_seconds": 20}))
    await in_flight(server)
    r = await client.post(f"/leases/{second['lease_id']}/fail", json={"error": "x"})
    assert r.json()["status"] == "failed"
    r = await asyncio.wait_for(poll, timeout=10)
    assert [x["task"]["id"] for x in r.json()["leases"]] == [ids[2]]
