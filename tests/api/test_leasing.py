"""The lease protocol over HTTP (SPEC §5, §6): order, filters, run_after, TTL, heartbeat,
lease expiry, release, fencing, batch completion, the state map, long polls and events."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.helpers import eventually, get_task, lease, submit

PROBLEM = "application/problem+json"
UNKNOWN_LEASE = "01ARZ3NDEKTSV4RRFFQ69G5FAV." + "0" * 32


def ts(value: str) -> datetime:
    """An RFC 3339 instant from the API."""
    return datetime.fromisoformat(value)


async def events_of(db_url: str, task_id: str) -> list[str]:
    """The outbox events of one task, in id order."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT event FROM events WHERE task_id = $1 ORDER BY id", task_id)
    finally:
        await conn.close()
    return [r["event"] for r in rows]


async def db_value(db_url: str, sql: str, *args: Any) -> Any:
    """One value from the test database."""
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def status_of(client: httpx.AsyncClient, task_id: str) -> str:
    status: str = (await get_task(client, task_id))["status"]
    return status


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


# ---------------------------------------------------------------------------------------
# Order, filters, max_tasks


async def test_lease_order_is_priority_then_enqueue_order(client: httpx.AsyncClient) -> None:
    labels = [("a", 128), ("b", 5), ("c", 128), ("d", 5), ("e", 255), ("f", 0), ("g", 128)]
    for label, priority in labels:
        await submit(client, label=label, priority=priority)
    leases = await lease(client, n=100)
    assert [x["task"]["label"] for x in leases] == ["f", "b", "d", "a", "c", "g", "e"]
    assert [x["task"]["priority"] for x in leases] == [0, 5, 5, 128, 128, 128, 255]
    assert len({x["lease_id"] for x in leases}) == len(leases)
    assert all(x["phase"] == "execute" and x["task"]["attempt"] == 1 for x in leases)


async def test_fifo_within_a_priority_follows_enqueue_order_one_lease_at_a_time(
    client: httpx.AsyncClient,
) -> None:
    # One batch: many tasks are created in the same millisecond, so only the enqueue
    # order (not the id) can tell them apart.
    items = [{"type": "job", "label": f"{i:03}", "priority": 7 if i % 3 else 9} for i in range(60)]
    r = await client.post("/tasks/batch", json={"tasks": items})
    assert r.status_code == 200, r.text
    later = await submit(client, label="late-urgent", priority=1)
    got = []
    while leases := await lease(client, n=1):
        got.append(leases[0]["task"]["label"])
    expected = ["late-urgent"]
    expected += [f"{i:03}" for i in range(60) if i % 3]
    expected += [f"{i:03}" for i in range(60) if not i % 3]
    assert got == expected
    assert (await get_task(client, later["id"]))["status"] == "running"


async def test_types_filter(client: httpx.AsyncClient) -> None:
    a = await submit(client, type="resize", priority=0)
    b = await submit(client, type="encode", priority=200)
    c = await submit(client, type="upload", priority=100)
    assert [x["task"]["id"] for x in await lease(client, n=10, types=["encode"])] == [b["id"]]
    assert await lease(client, n=10, types=["encode"]) == []
    assert await lease(client, n=10, types=["nope"]) == []
    got = await lease(client, n=10, types=["upload", "resize"])
    assert [x["task"]["id"] for x in got] == [a["id"], c["id"]]


async def test_groups_filter(client: httpx.AsyncClient) -> None:
    no_group = await submit(client, priority=0)
    g1 = await submit(client, group="g1", priority=1)
    g2 = await submit(client, group="g2", priority=2)
    g2b = await submit(client, group="g2", type="other", priority=3)
    assert [x["task"]["id"] for x in await lease(client, n=10, groups=["g2"])] == [
        g2["id"],
        g2b["id"],
    ]
    assert await lease(client, n=10, groups=["g2"]) == []
    got = await lease(client, n=10, groups=["g1"], types=["job"])
    assert [x["task"]["id"] for x in got] == [g1["id"]]
    assert [x["task"]["group"] for x in got] == ["g1"]
    # The task without a group is only leased without a groups filter.
    assert await lease(client, n=10, groups=["g1", "g2", "g3"]) == []
    assert [x["task"]["id"] for x in await lease(client, n=10)] == [no_group["id"]]


async def test_max_tasks(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await submit(client, payload={"i": i})
    first = await lease(client, n=3)
    second = await lease(client, n=3)
    assert [len(first), len(second)] == [3, 2]
    assert [x["task"]["payload"]["i"] for x in first + second] == [0, 1, 2, 3, 4]
    assert await lease(client, n=3) == []
    for bad in (0, 1001):
        r = await client.post("/leases", json={"worker_id": "w", "max_tasks": bad})
        assert_problem(r, 422)


async def test_lease_shows_worker_and_payload(client: httpx.AsyncClient) -> None:
    task = await submit(
        client,
        payload={"url": "s3://b/k"},
        tags={"profile": "dr"},
        expected_io={"net_rx_bytes": 10},
        retry={"max_attempts": 7},
    )
    (grant,) = await lease(client, worker_id="worker-7", lease_seconds=42)
    assert grant["task"]["payload"] == {"url": "s3://b/k"}
    assert grant["task"]["tags"] == {"profile": "dr"}
    assert grant["task"]["max_attempts"] == 7
    assert grant["task"]["expected_io"]["net_rx_bytes"] == 10
    assert grant["task"]["state"] is None
    running = await get_task(client, task["id"])
    assert running["status"] == "running"
    assert running["lease"]["id"] == grant["lease_id"]
    assert running["lease"]["worker"] == "worker-7"
    assert ts(running["lease"]["expires_at"]) == ts(grant["expires_at"])
    remaining = ts(grant["expires_at"]) - ts(running["started_at"])
    assert timedelta(seconds=41) < remaining <= timedelta(seconds=42)


# ---------------------------------------------------------------------------------------
# run_after and ttl_seconds


async def test_run_after_in_the_future_is_scheduled_then_leased(
    client: httpx.AsyncClient,
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=2)
    task = await submit(client, run_after=at.isoformat())
    assert task["status"] == "scheduled"
    assert ts(task["run_after"]) == at
    assert await lease(client, n=10) == []
    await eventually(lambda: status_of(client, task["id"]), lambda s: s == "pending")
    (grant,) = await lease(client)
    assert grant["task"]["id"] == task["id"]
    assert grant["task"]["attempt"] == 1


async def test_run_after_in_the_past_is_pending_at_once(client: httpx.AsyncClient) -> None:
    at = datetime.now(UTC) - timedelta(hours=1)
    task = await submit(client, run_after=at.isoformat())
    assert task["status"] == "pending"
    assert [x["task"]["id"] for x in await lease(client)] == [task["id"]]


async def test_ttl_expires_an_unstarted_task_and_it_is_never_leased(
    client: httpx.AsyncClient, db_url: str
) -> None:
    task = await submit(client, ttl_seconds=0.3)
    assert task["status"] == "pending"
    assert task["ttl_deadline"] is not None
    expired = await eventually(
        lambda: get_task(client, task["id"]), lambda t: t["status"] == "expired"
    )
    assert expired["finished_at"] is not None
    assert expired["attempt"] == 0
    assert expired["started_at"] is None
    assert await lease(client, n=10) == []
    assert await events_of(db_url, task["id"]) == ["task.created", "task.expired"]


async def test_ttl_is_judged_by_the_database_clock_even_before_the_sweeper_runs(
    make_server: ServerFactory, db_url: str
) -> None:
    server = await make_server(sweep=False)
    task = await submit(server.client, ttl_seconds=0.3)
    await eventually(
        lambda: db_value(
            db_url, "SELECT now() > ttl_deadline FROM tasks WHERE id = $1", task["id"]
        ),
        lambda past: bool(past),
    )
    assert await lease(server.client, n=10) == []
    assert (await get_task(server.client, task["id"]))["status"] == "pending"


async def test_ttl_does_not_touch_a_task_leased_in_time(
    client: httpx.AsyncClient, db_url: str
) -> None:
    r = await client.post(
        "/tasks/batch",
        json={"tasks": [{"type": "job", "ttl_seconds": 1.5}, {"type": "idle", "ttl_seconds": 1.5}]},
    )
    leased_id, idle_id = (x["task"]["id"] for x in r.json()["results"])
    (grant,) = await lease(client, types=["job"])
    assert grant["task"]["id"] == leased_id
    # Same deadline: once the idle one has expired, the sweeper has passed the leased one's.
    await eventually(lambda: status_of(client, idle_id), lambda s: s == "expired")
    assert (await get_task(client, leased_id))["status"] == "running"
    r = await client.post(f"/leases/{grant['lease_id']}/complete", json={"result": 1})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    assert "task.expired" not in await events_of(db_url, leased_id)


# ---------------------------------------------------------------------------------------
# Heartbeat


async def test_heartbeat_extends_and_records_progress_and_state(
    client: httpx.AsyncClient, db_url: str
) -> None:
    task = await submit(client)
    (grant,) = await lease(client, lease_seconds=5)
    lid = grant["lease_id"]
    r = await client.post(
        f"/leases/{lid}/heartbeat",
        json={
            "extend_seconds": 120,
            "progress": {"fraction": 0.25, "message": "a quarter"},
            "state": {"upload_id": "u-1", "parts": [1, 2]},
        },
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["cancel"] is None
    assert ts(answer["expires_at"]) > ts(grant["expires_at"]) + timedelta(seconds=100)
    seen = await get_task(client, task["id"])
    assert seen["status"] == "running"
    assert ts(seen["lease"]["expires_at"]) == ts(answer["expires_at"])
    assert seen["progress"] == {"fraction": 0.25, "message": "a quarter"}
    assert seen["state"] == {"upload_id": "u-1", "parts": [1, 2]}

    # A bare heartbeat extends by the lease's own lease_seconds and keeps the rest.
    r = await client.post(f"/leases/{lid}/heartbeat", json={})
    assert r.status_code == 200, r.text
    bare = ts(r.json()["expires_at"])
    assert bare < ts(answer["expires_at"])
    assert bare > ts(grant["expires_at"])
    again = await get_task(client, task["id"])
    assert again["progress"] == {"fraction": 0.25, "message": "a quarter"}
    assert again["state"] == {"upload_id": "u-1", "parts": [1, 2]}
    assert r.json()["cancel"] is None

    r = await client.post(f"/leases/{lid}/heartbeat", json={"progress": {"fraction": 1}})
    assert r.status_code == 200, r.text
    assert (await get_task(client, task["id"]))["progress"]["fraction"] == 1

    assert await events_of(db_url, task["id"]) == [
        "task.created",
        "task.leased",
        "task.progress",
        "task.progress",
    ]


async def test_heartbeat_keeps_a_short_lease_alive(client: httpx.AsyncClient) -> None:
    task = await submit(client)
    (grant,) = await lease(client, lease_seconds=1)
    r = await client.post(f"/leases/{grant['lease_id']}/heartbeat", json={"extend_seconds": 60})
    assert r.status_code == 200, r.text
    # A later task, leased briefly and let expire, proves the sweeper ran past the first
    # lease's original deadline.
    probe = await submit(client, type="probe")
    (short,) = await lease(client, types=["probe"], lease_seconds=1)
    await eventually(lambda: status_of(client, probe["id"]), lambda s: s == "pending")
    assert (await get_task(client, task["id"]))["status"] == "running"
    r = await client.post(f"/leases/{grant['lease_id']}/complete", json={})
    assert r.status_code == 200, r.text
    assert short["lease_id"] != grant["lease_id"]


async def test_heartbeat_on_an_expired_lease_is_410(client: httpx.AsyncClient) -> None:
    task = await submit(client)
    (grant,) = await lease(client, lease_seconds=0.3)
    await eventually(lambda: status_of(client, task["id"]), lambda s: s == "pending")
    before = await get_task(client, task["id"])
    r = await client.post(
        f"/leases/{grant['lease_id']}/heartbeat",
        json={"extend_seconds": 60, "progress": {"fraction": 0.5}, "state": {"x": 1}},
    )
    assert_problem(r, 410)
    assert await get_task(client, task["id"]) == before


# ---------------------------------------------------------------------------------------
# Lease expiry


async def test_expired_lease_returns_the_task_with_the_attempt_counted(
    client: httpx.AsyncClient, db_url: str
) -> None:
    task = await submit(client, retry={"max_attempts": 3})
    (old,) = await lease(client, lease_seconds=0.3, worker_id="slow")
    assert old["task"]["attempt"] == 1
    back = await eventually(
        lambda: get_task(client, task["id"]), lambda t: t["status"] == "pending"
    )
    assert back["attempt"] == 1
    assert back["lease"] is None
    assert back["finished_at"] is None
    assert back["error"]["message"] == "lease expired"

    (new,) = await lease(client, worker_id="fast")
    assert new["task"]["id"] == task["id"]
    assert new["task"]["attempt"] == 2
    assert new["lease_id"] != old["lease_id"]

    before = await get_task(client, task["id"])
    old_id = old["lease_id"]
    for path, body in [
        ("complete", {"result": "stale"}),
        ("fail", {"error": "stale", "retryable": False}),
        ("heartbeat", {"extend_seconds": 100, "progress": {"fraction": 0.9}}),
        ("release", None),
    ]:
        r = await client.post(f"/leases/{old_id}/{path}", json=body)
        assert_problem(r, 410)
    r = await client.patch(f"/leases/{old_id}/state", json={"state": {"stale": True}})
    assert_problem(r, 410)
    assert await get_task(client, task["id"]) == before

    r = await client.post(f"/leases/{new['lease_id']}/complete", json={"result": "ok"})
    assert r.status_code == 200, r.text
    done = await get_task(client, task["id"])
    assert (done["status"], done["attempt"], done["result"]) == ("completed", 2, "ok")
    assert await events_of(db_url, task["id"]) == [
        "task.created",
        "task.leased",
        "lease.expired",
        "task.leased",
        "task.completed",
    ]


async def test_expired_lease_on_the_last_attempt_fails_the_task(
    client: httpx.AsyncClient, db_url: str
) -> None:
    task = await submit(client, retry={"max_attempts": 1})
    (grant,) = await lease(client, lease_seconds=0.3)
    failed = await eventually(
        lambda: get_task(client, task["id"]), lambda t: t["status"] == "failed"
    )
    assert failed["attempt"] == 1
    assert failed["finished_at"] is not None
    assert failed["lease"] is None
    assert failed["error"]["message"] == "lease expired"
    assert await lease(client, n=10) == []
    r = await client.post(f"/leases/{grant['lease_id']}/complete", json={})
    assert_problem(r, 410)
    assert await get_task(client, task["id"]) == failed
    assert await events_of(db_url, task["id"]) == [
        "task.created",
        "task.leased",
        "lease.expired",
        "task.failed",
    ]


async def test_lease_expiry_is_judged_by_the_database_clock_at_call_time(
    make_server: ServerFactory, db_url: str
) -> None:
    # No sweeper: the lease is still recorded as running, yet it is over once the
    # database's clock passes its expiry.
    server = await make_server(sweep=False)
    client = server.client
    task = await submit(client)
    (grant,) = await lease(client, lease_seconds=30)
    # A heartbeat sets the expiry to the database's now() + extend_seconds.
    r = await client.post(f"/leases/{grant['lease_id']}/heartbeat", json={"extend_seconds": 0.4})
    assert r.status_code == 200, r.text
    await eventually(
        lambda: db_value(
            db_url, "SELECT now() > lease_expires_at FROM tasks WHERE id = $1", task["id"]
        ),
        lambda past: bool(past),
    )
    before = await get_task(client, task["id"])
    assert before["status"] == "running"
    lid = grant["lease_id"]
    assert_problem(await client.post(f"/leases/{lid}/complete", json={"result": 1}), 410)
    assert_problem(await client.post(f"/leases/{lid}/heartbeat", json={}), 410)
    assert_problem(await client.post(f"/leases/{lid}/fail", json={"error": "x"}), 410)
    assert_problem(await client.post(f"/leases/{lid}/release"), 410)
    assert await get_task(client, task["id"]) == before


# ---------------------------------------------------------------------------------------
# Release


async def test_release_returns_the_task_without_counting_the_attempt(
    client: httpx.AsyncClient, db_url: str
) -> None:
    task = await submit(client, retry={"max_attempts": 2})
    (first,) = await lease(client)
    assert first["task"]["attempt"] == 1
    r = await client.post(f"/leases/{first['lease_id']}/release")
    assert r.status_code == 200, r.text
    released = r.json()
    assert released["status"] == "pending"
    assert released["attempt"] == 0
    assert released["lease"] is None
    assert await get_task(client, task["id"]) == released

    (second,) = await lease(client)
    assert second["task"]["attempt"] == 1
    # A retry counts; a release after it does not.
    r = await client.post(
        f"/leases/{second['lease_id']}/fail", json={"error": "flaky", "retry_after_seconds": 0}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    (third,) = await lease(client)
    assert third["task"]["attempt"] == 2
    r = await client.post(f"/leases/{third['lease_id']}/release")
    assert r.json()["attempt"] == 1
    (fourth,) = await lease(client)
    assert fourth["task"]["attempt"] == 2
    # Released leases are over.
    for old in (first, third):
        before = await get_task(client, task["id"])
        r = await client.post(f"/leases/{old['lease_id']}/complete", json={})
        assert r.status_code in (409, 410), r.text
        assert await get_task(client, task["id"]) == before
    r = await client.post(f"/leases/{fourth['lease_id']}/complete", json={})
    assert r.json()["status"] == "completed"
    events = await events_of(db_url, task["id"])
    assert events.count("task.leased") == 4
    assert events[-1] == "task.completed"


async def test_release_twice_is_409(client: httpx.AsyncClient) -> None:
    task = await submit(client)
    (grant,) = await lease(client)
    assert (await client.post(f"/leases/{grant['lease_id']}/release")).status_code == 200
    before = await get_task(client, task["id"])
    assert_problem(await client.post(f"/leases/{grant['lease_id']}/release"), 409)
    assert await get_task(client, task["id"]) == before


# ---------------------------------------------------------------------------------------
# Fencing


async def test_complete_twice_is_409_and_changes_nothing(
    client: httpx.AsyncClient, db_url: str
) -> None:
    task = await submit(client)
    (grant,) = await lease(client)
    r = await client.post(
        f"/leases/{grant['lease_id']}/complete",
        json={"result": {"n": 1}, "actual_io": {"read_bytes": 5}},
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed"
    assert done["result"] == {"n": 1}
    assert done["actual_io"]["read_bytes"] == 5
    assert done["finished_at"] is not None
    assert await get_task(client, task["id"]) == done
    lid = grant["lease_id"]
    body = assert_problem(
        await client.post(f"/leases/{lid}/complete", json={"result": {"n": 2}}), 409
    )
    assert body.get("task_status") == "completed"
    assert_problem(await client.post(f"/leases/{lid}/fail", json={"error": "late"}), 409)
    assert_problem(await client.post(f"/leases/{lid}/heartbeat", json={}), 409)
    assert_problem(await client.post(f"/leases/{lid}/release"), 409)
    assert_problem(await client.patch(f"/leases/{lid}/state", json={"state": {"a": 1}}), 409)
    assert await get_task(client, task["id"]) == done
    assert await events_of(db_url, task["id"]) == ["task.created", "task.leased", "task.completed"]


async def test_complete_after_fail_is_409(client: httpx.AsyncClient) -> None:
    permanent = await submit(client, type="perm")
    retrying = await submit(client, type="retry", retry={"base_seconds": 60})
    (p,) = await lease(client, types=["perm"])
    (q,) = await lease(client, types=["retry"])
    r = await client.post(f"/leases/{p['lease_id']}/fail", json={"error": "no", "retryable": False})
    assert r.json()["status"] == "failed"
    r = await client.post(f"/leases/{q['lease_id']}/fail", json={"error": "later"})
    assert r.json()["status"] == "scheduled"
    for grant, task in ((p, permanent), (q, retrying)):
        before = await get_task(client, task["id"])
        lid = grant["lease_id"]
        assert_problem(await client.post(f"/leases/{lid}/complete", json={"result": 1}), 409)
        assert_problem(await client.post(f"/leases/{lid}/fail", json={"error": "again"}), 409)
        assert await get_task(client, task["id"]) == before


async def test_unknown_and_malformed_lease_ids_are_404(client: httpx.AsyncClient) -> None:
    task = await submit(client)
    (grant,) = await lease(client)
    before = await get_task(client, task["id"])
    task_part, token = grant["lease_id"].split(".")
    bad_ids = [
        UNKNOWN_LEASE,
        "not-a-lease",
        task_part,
        f"{task_part}.{token[:-1]}",
        f"{task_part}.{token}x",
        f"{task_part.lower()}.{token}",
        "x" * 300,
    ]
    for bad in bad_ids:
        calls = [
            client.post(f"/leases/{bad}/complete", json={"result": 1}),
            client.post(f"/leases/{bad}/fail", json={"error": "e"}),
            client.post(f"/leases/{bad}/heartbeat", json={"extend_seconds": 9}),
            client.post(f"/leases/{bad}/release"),
            client.patch(f"/leases/{bad}/state", json={"state": {"a": 1}}),
        ]
        for r in await asyncio.gather(*calls):
            assert_problem(r, 404)
    assert await get_task(client, task["id"]) == before


async def test_a_forged_token_for_a_real_task_is_refused(client: httpx.AsyncClient) -> None:
    task = await submit(client)
    (grant,) = await lease(client)
    before = await get_task(client, task["id"])
    task_part, token = grant["lease_id"].split(".")
    forged = f"{task_part}.{'f' * 32 if token != 'f' * 32 else 'e' * 32}"
    r = await client.post(f"/leases/{forged}/complete", json={"result": "forged"})
    assert r.status_code in (404, 409, 410)
    assert r.headers["content-type"].startswith(PROBLEM)
    assert await get_task(client, task["id"]) == before


# ---------------------------------------------------------------------------------------
# Batch completion


async def test_batch_complete_mixed_items_answers_in_input_order(
    client: httpx.AsyncClient, db_url: str
) -> None:
    a = await submit(client, label="a")
    b = await submit(client, label="b")
    (la,) = await lease(client)
    (lb,) = await lease(client)
    c = await submit(client, label="c")
    (lc,) = await lease(client, lease_seconds=0.3)
    await eventually(lambda: status_of(client, c["id"]), lambda s: s == "pending")
    c_before = await get_task(client, c["id"])
    items = [
        {"lease_id": la["lease_id"], "result": "A", "state": {"s": "a"}},
        {"lease_id": lc["lease_id"], "result": "C"},
        {"lease_id": "garbage"},
        {"lease_id": la["lease_id"], "result": "A-again"},
        {"lease_id": lb["lease_id"], "result": {"b": True}, "actual_io": {"net_tx_bytes": 3}},
        {"lease_id": UNKNOWN_LEASE, "result": "?"},
    ]
    r = await client.post("/leases/complete", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["lease_id"] for x in results] == [i["lease_id"] for i in items]
    assert [x["ok"] for x in results] == [True, False, False, False, True, False]
    assert [None if x["ok"] else x["error"]["status"] for x in results] == [
        None,
        410,
        404,
        409,
        None,
        404,
    ]
    assert results[0]["task"]["id"] == a["id"]
    assert results[4]["task"]["id"] == b["id"]

    done_a = await get_task(client, a["id"])
    assert (done_a["status"], done_a["result"], done_a["state"]) == ("completed", "A", {"s": "a"})
    done_b = await get_task(client, b["id"])
    assert (done_b["status"], done_b["result"]) == ("completed", {"b": True})
    assert done_b["actual_io"]["net_tx_bytes"] == 3
    assert await get_task(client, c["id"]) == c_before
    assert (await events_of(db_url, a["id"])).count("task.completed") == 1

    # The same batch again: every item refused, nothing changes.
    r = await client.post("/leases/complete", json={"items": items})
    assert [x["ok"] for x in r.json()["results"]] == [False] * 6
    assert await get_task(client, a["id"]) == done_a
    assert await get_task(client, b["id"]) == done_b


async def test_batch_complete_with_an_old_and_the_current_lease_of_one_task(
    client: httpx.AsyncClient,
) -> None:
    task = await submit(client)
    (old,) = await lease(client, lease_seconds=0.3)
    await eventually(lambda: status_of(client, task["id"]), lambda s: s == "pending")
    (new,) = await lease(client)
    items = [
        {"lease_id": old["lease_id"], "result": "old"},
        {"lease_id": new["lease_id"], "result": "new"},
    ]
    r = await client.post("/leases/complete", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["ok"] for x in results] == [False, True]
    assert results[0]["error"]["status"] == 410
    assert "task" not in results[0]  # a refused item names no task
    done = await get_task(client, task["id"])
    assert (done["status"], done["result"], done["attempt"]) == ("completed", "new", 2)


async def test_batch_complete_completes_many(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/tasks/batch", json={"tasks": [{"type": "job", "payload": i} for i in range(50)]}
    )
    ids = [x["task"]["id"] for x in r.json()["results"]]
    leases = await lease(client, n=50)
    items = [{"lease_id": x["lease_id"], "result": x["task"]["payload"] * 2} for x in leases]
    items.append(dict(items[0]))  # named twice: the repeat is refused, not completed again
    r = await client.post(
        "/leases/complete", json={"items": items}, headers={"Prefer": "return=minimal"}
    )
    assert r.headers["preference-applied"] == "return=minimal"
    results = r.json()["results"]
    assert all(x["ok"] and x["status"] == "completed" and x["task"] is None for x in results[:-1])
    assert not results[-1]["ok"] and results[-1]["error"]["status"] == 409
    assert "status" not in results[-1]
    listing = (await client.get("/tasks", params={"status": "completed", "limit": 100})).json()
    assert {t["id"]: t["result"] for t in listing["tasks"]} == {
        task_id: i * 2 for i, task_id in enumerate(ids)
    }


# ---------------------------------------------------------------------------------------
# The state map


async def test_state_patch_merges_by_default_and_replaces_on_request(
    client: httpx.AsyncClient,
) -> None:
    task = await submit(client)
    (grant,) = await lease(client)
    lid = grant["lease_id"]
    r = await client.patch(f"/leases/{lid}/state", json={"state": {"a": 1, "b": {"x": 1}}})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == {"a": 1, "b": {"x": 1}}
    r = await client.patch(f"/leases/{lid}/state", json={"state": {"b": {"y": 2}, "c": [3]}})
    assert r.json()["state"] == {"a": 1, "b": {"y": 2}, "c": [3]}
    assert (await get_task(client, task["id"]))["state"] == {"a": 1, "b": {"y": 2}, "c": [3]}
    r = await client.patch(f"/leases/{lid}/state", json={"state": {"z": 0}, "mode": "replace"})
    assert r.json()["state"] == {"z": 0}
    assert (await get_task(client, task["id"]))["state"] == {"z": 0}
    r = await client.patch(f"/leases/{lid}/state", json={"state": {"z": 0}, "mode": "upsert"})
    assert_problem(r, 422)
    r = await client.patch(f"/leases/{lid}/state", json={"state": [1, 2]})
    assert_problem(r, 422)
    assert (await get_task(client, task["id"]))["state"] == {"z": 0}

    r = await client.post(f"/leases/{lid}/complete", json={"result": 1, "state": {"final": True}})
    assert r.status_code == 200, r.text
    assert (await get_task(client, task["id"]))["state"] == {"final": True}


async def test_state_survives_a_retry_and_reaches_the_next_lease(
    client: httpx.AsyncClient,
) -> None:
    task = await submit(client)
    (grant,) = await lease(client)
    await client.patch(f"/leases/{grant['lease_id']}/state", json={"state": {"upload": "u9"}})
    r = await client.post(
        f"/leases/{grant['lease_id']}/fail", json={"error": "x", "retry_after_seconds": 0}
    )
    assert r.json()["status"] == "pending"
    (again,) = await lease(client)
    assert again["task"]["id"] == task["id"]
    assert again["task"]["state"] == {"upload": "u9"}


async def test_state_over_the_limit_is_413_and_changes_nothing(
    make_server: ServerFactory,
) -> None:
    server = await make_server(max_state_bytes=1000)
    client = server.client
    task = await submit(client)
    (grant,) = await lease(client)
    lid = grant["lease_id"]
    r = await client.patch(f"/leases/{lid}/state", json={"state": {"a": "x" * 600}})
    assert r.status_code == 200, r.text
    before = await get_task(client, task["id"])
    big = {"blob": "y" * 1200}
    assert_problem(await client.patch(f"/leases/{lid}/state", json={"state": big}), 413)
    r = await client.patch(f"/leases/{lid}/state", json={"state": big, "mode": "replace"})
    assert_problem(r, 413)
    r = await client.post(f"/leases/{lid}/heartbeat", json={"extend_seconds": 999, "state": big})
    assert_problem(r, 413)
    assert_problem(await client.post(f"/leases/{lid}/complete", json={"state": big}), 413)
    r = await client.post("/leases/complete", json={"items": [{"lease_id": lid, "state": big}]})
    assert r.status_code == 200, r.text
    (item,) = r.json()["results"]
    assert item["ok"] is False
    assert item["error"]["status"] == 413
    # A merge whose result would pass the limit is refused as well.
    r = await client.patch(f"/leases/{lid}/state", json={"state": {"b": "z" * 600}})
    assert_problem(r, 413)
    assert await get_task(client, task["id"]) == before

    # Within the limit everything still works.
    r = await client.patch(f"/leases/{lid}/state", json={"state": {"b": "z" * 100}})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == {"a": "x" * 600, "b": "z" * 100}


# ---------------------------------------------------------------------------------------
# Long polls


async def _in_flight(server: Server) -> None:
    """Wait until the server is handling a request (the long poll just sent)."""

    async def count() -> int:
        return len(server.uvicorn.server_state.tasks)

    await eventually(count, lambda n: n > 0)


async def test_long_poll_returns_when_a_task_is_submitted(make_server: ServerFactory) -> None:
    # The fallback re-check is far away: only the NOTIFY can end the wait early.
    server = await make_server(poll_fallback_seconds=30)
    client = server.client
    poll = asyncio.create_task(
        client.post("/leases", json={"worker_id": "w", "wait_seconds": 20, "max_tasks": 5})
    )
    await _in_flight(server)
    assert not poll.done()
    task = await submit(client, payload={"late": True})
    r = await asyncio.wait_for(poll, timeout=10)
    assert r.status_code == 200, r.text
    (grant,) = r.json()["leases"]
    assert grant["task"]["id"] == task["id"]
    assert grant["task"]["payload"] == {"late": True}


async def test_submit_on_one_replica_wakes_a_long_poll_on_another(
    make_server: ServerFactory,
) -> None:
    a = await make_server(poll_fallback_seconds=30)
    b = await make_server(poll_fallback_seconds=30)
    poll = asyncio.create_task(
        a.client.post("/leases", json={"worker_id": "w", "wait_seconds": 20, "types": ["x"]})
    )
    await _in_flight(a)
    # Work the poll does not want wakes it but does not end it.
    await submit(b.client, type="y")
    assert not poll.done()
    task = await submit(b.client, type="x")
    r = await asyncio.wait_for(poll, timeout=10)
    assert [x["task"]["id"] for x in r.json()["leases"]] == [task["id"]]


async def test_long_poll_wakes_when_a_scheduled_task_becomes_due(
    make_server: ServerFactory,
) -> None:
    server = await make_server(poll_fallback_seconds=30)
    at = datetime.now(UTC) + timedelta(seconds=1)
    task = await submit(server.client, run_after=at.isoformat())
    r = await asyncio.wait_for(
        server.client.post("/leases", json={"worker_id": "w", "wait_seconds": 20}), timeout=10
    )
    assert [x["task"]["id"] for x in r.json()["leases"]] == [task["id"]]


async def test_long_poll_wakes_when_a_lease_is_released(make_server: ServerFactory) -> None:
    server = await make_server(poll_fallback_seconds=30)
    client = server.client
    task = await submit(client)
    (grant,) = await lease(client)
    poll = asyncio.create_task(client.post("/leases", json={"worker_id": "w2", "wait_seconds": 20}))
    await _in_flight(server)
    assert (await client.post(f"/leases/{grant['lease_id']}/release")).status_code == 200
    r = await asyncio.wait_for(poll, timeout=10)
    assert [x["task"]["id"] for x in r.json()["leases"]] == [task["id"]]


async def test_long_poll_times_out_with_an_empty_list(client: httpx.AsyncClient) -> None:
    r = await asyncio.wait_for(
        client.post("/leases", json={"worker_id": "w", "wait_seconds": 0.5}), timeout=10
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"leases": []}
    for bad in (-1, 61):
        assert_problem(
            await client.post("/leases", json={"worker_id": "w", "wait_seconds": bad}), 422
        )


# ---------------------------------------------------------------------------------------
# Events


async def test_every_change_writes_its_event(client: httpx.AsyncClient, db_url: str) -> None:
    task = await submit(client, tags={"k": "v"}, group="ev")
    (grant,) = await lease(client, worker_id="w-ev")
    lid = grant["lease_id"]
    await client.post(f"/leases/{lid}/heartbeat", json={"progress": {"fraction": 0.5}})
    await client.post(f"/leases/{lid}/heartbeat", json={})
    await client.patch(f"/leases/{lid}/state", json={"state": {"a": 1}})
    await client.post(f"/leases/{lid}/complete", json={"result": 1})
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT event, task_id, type, group_name, tags, data FROM events"
            " WHERE task_id = $1 ORDER BY id",
            task["id"],
        )
    finally:
        await conn.close()
    assert [r["event"] for r in rows] == [
        "task.created",
        "task.leased",
        "task.progress",
        "task.completed",
    ]
    for row in rows:
        assert (row["type"], row["group_name"]) == ("job", "ev")
        assert json.loads(row["tags"]) == {"k": "v"}
    data = [json.loads(r["data"]) for r in rows]
    assert [d["status"] for d in data] == ["pending", "running", "running", "completed"]
    assert [d["attempt"] for d in data] == [0, 1, 1, 1]
    assert data[1]["worker"] == "w-ev"
    assert data[2]["progress"] == {"fraction": 0.5}


async def test_long_poll_of_a_client_that_hung_up_grants_nothing(
    client: httpx.AsyncClient, server: Server
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=0.3) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post("/leases", json={"worker_id": "gone", "wait_seconds": 20})
    # The abandoned poll is woken by this submit but must not lease the task to nobody.
    task = await submit(client)
    (grant,) = await lease(client, worker_id="present")
    assert grant["task"]["id"] == task["id"]
