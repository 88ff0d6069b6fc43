"""Submitting through HTTP: single and batch submits, defaults, duplicate strategies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.api.support import assert_problem, parse_ts, table_counts
from tests.conftest import ServerFactory
from tests.helpers import get_task, lease, submit


async def all_task_ids(client: httpx.AsyncClient) -> list[str]:
    """Every task id, through the listing (one page is enough in these tests)."""
    r = await client.get("/tasks", params={"limit": 1000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    return [t["id"] for t in body["tasks"]]


async def complete_one(client: httpx.AsyncClient, task_id: str) -> None:
    """Lease the (only pending) task and complete it."""
    (grant,) = await lease(client)
    assert grant["task"]["id"] == task_id
    r = await client.post(f"/leases/{grant['lease_id']}/complete", json={})
    assert r.status_code == 200, r.text
    assert (await get_task(client, task_id))["status"] == "completed"


# -- single submit --------------------------------------------------------------------


async def test_submit_minimal_gets_every_default(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    r = await client.post("/tasks", json={"type": "email.send"})
    after = datetime.now(UTC)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["outcome"] == "created"
    assert body.get("replaced_task_id") is None
    task = body["task"]
    assert isinstance(task["id"], str) and task["id"]
    assert task["type"] == "email.send"
    assert task["status"] == "pending"
    assert task["priority"] == 128
    assert task["payload"] is None
    assert task["dedup_key"] is None
    assert task["group"] is None
    assert task["tags"] == {}
    assert task["label"] is None
    assert task["expected_io"] == {
        "read_bytes": 0,
        "write_bytes": 0,
        "net_rx_bytes": 0,
        "net_tx_bytes": 0,
    }
    assert task["actual_io"] is None
    assert task["retry"] == {
        "max_attempts": 3,
        "backoff": "exponential",
        "base_seconds": 1.0,
        "max_seconds": 300.0,
    }
    assert task["attempt"] == 0
    assert task["ttl_deadline"] is None
    assert task["parent_id"] is None
    assert task["lease"] is None
    assert task["started_at"] is None
    assert task["finished_at"] is None
    assert task["result"] is None
    assert task["error"] is None
    assert task["superseded_by"] is None
    assert task["supersedes"] is None
    created = parse_ts(task["created_at"])
    # The database clock and ours may differ slightly; allow a little slack.
    slack = timedelta(seconds=5)
    assert before - slack <= created <= after + slack
    assert parse_ts(task["run_after"]) <= created + timedelta(seconds=1)
    # The record reads back exactly as answered.
    assert await get_task(client, task["id"]) == task


async def test_submit_echoes_every_field(client: httpx.AsyncClient) -> None:
    run_after = datetime.now(UTC) + timedelta(hours=1)
    sent = {
        "type": "video:transcode-v2",
        "payload": {"src": "s3://bucket/a.mp4", "sizes": [240, 720], "opts": {"crf": 23.5}},
        "priority": 7,
        "dedup_key": "video-42",
        "on_duplicate": "reject",
        "group": "transcoders",
        "tags": {"profile": "dr", "tenant/id": "t-1", "a.b:c_d-e": ""},
        "expected_io": {
            "read_bytes": 10,
            "write_bytes": 20,
            "net_rx_bytes": 2**40,
            "net_tx_bytes": 2**62,
        },
        "retry": {
            "max_attempts": 9,
            "backoff": "fixed",
            "base_seconds": 2.5,
            "max_seconds": 60.0,
        },
        "run_after": run_after.isoformat(),
        "ttl_seconds": 7200,
        "label": "Transcode a.mp4 — ünïcode ✓",
    }
    r = await client.post("/tasks", json=sent)
    assert r.status_code == 201, r.text
    task = r.json()["task"]
    # run_after in the future: not leasable yet.
    assert task["status"] == "scheduled"
    for key in ("type", "payload", "priority", "dedup_key", "group", "tags", "label"):
        assert task[key] == sent[key], key
    assert task["expected_io"] == sent["expected_io"]
    assert task["retry"] == sent["retry"]
    assert abs(parse_ts(task["run_after"]) - run_after) < timedelta(milliseconds=1)
    deadline = parse_ts(task["ttl_deadline"])
    created = parse_ts(task["created_at"])
    assert abs(deadline - (created + timedelta(seconds=7200))) < timedelta(seconds=5)
    assert await get_task(client, task["id"]) == task
    # A scheduled task is not leasable.
    assert await lease(client) == []


async def test_submit_payload_kinds_round_trip(client: httpx.AsyncClient) -> None:
    payloads: list[Any] = [
        0,
        -1.5,
        2**70,
        'text with "quotes" and \\ and \u2028',
        [],
        [1, "two", None, True, {"x": []}],
        {"": "empty key", "nested": {"deep": [[[{"k": False}]]]}},
        "emoji 🎉 and CJK 漢字",
    ]
    for payload in payloads:
        task = await submit(client, payload=payload)
        assert task["payload"] == payload
        assert (await get_task(client, task["id"]))["payload"] == payload


async def test_run_after_in_the_past_is_pending(client: httpx.AsyncClient) -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    task = await submit(client, run_after=past.isoformat())
    assert task["status"] == "pending"
    assert abs(parse_ts(task["run_after"]) - past) < timedelta(milliseconds=1)
    (grant,) = await lease(client)
    assert grant["task"]["id"] == task["id"]


async def test_run_after_with_offset_is_the_same_instant(client: httpx.AsyncClient) -> None:
    task = await submit(client, run_after="2999-06-01T12:00:00+05:30")
    assert task["status"] == "scheduled"
    assert parse_ts(task["run_after"]) == datetime(2999, 6, 1, 6, 30, tzinfo=UTC)


async def test_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = {(await submit(client))["id"] for _ in range(20)}
    assert len(ids) == 20


# -- duplicates ---------------------------------------------------------------------


async def test_skip_answers_the_existing_task(client: httpx.AsyncClient, db_url: str) -> None:
    first = await client.post(
        "/tasks", json={"type": "sync", "dedup_key": "acct-1", "payload": {"v": 1}}
    )
    assert first.status_code == 201, first.text
    holder = first.json()["task"]
    tasks_before, _ = await table_counts(db_url)
    # on_duplicate defaults to skip.
    second = await client.post(
        "/tasks", json={"type": "sync", "dedup_key": "acct-1", "payload": {"v": 2}, "priority": 1}
    )
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["outcome"] == "deduplicated"
    assert body["task"]["id"] == holder["id"]
    # Nothing changed: the existing task's fields stand.
    assert body["task"]["payload"] == {"v": 1}
    assert body["task"]["priority"] == 128
    assert await get_task(client, holder["id"]) == holder
    assert await all_task_ids(client) == [holder["id"]]
    tasks_after, _ = await table_counts(db_url)
    assert tasks_after == tasks_before
    # An explicit skip behaves the same.
    third = await client.post(
        "/tasks", json={"type": "sync", "dedup_key": "acct-1", "on_duplicate": "skip"}
    )
    assert third.status_code == 200, third.text
    assert third.json()["task"]["id"] == holder["id"]
    assert (await table_counts(db_url))[0] == tasks_before


async def test_reject_answers_409_with_existing_task_id(
    client: httpx.AsyncClient, db_url: str
) -> None:
    holder = await submit(client, type="sync", dedup_key="acct-1")
    before = await table_counts(db_url)
    r = await client.post(
        "/tasks",
        json={"type": "sync", "dedup_key": "acct-1", "on_duplicate": "reject", "payload": 1},
    )
    problem = assert_problem(r, 409)
    assert problem["existing_task_id"] == holder["id"]
    assert "acct-1" in problem["detail"]
    assert await table_counts(db_url) == before
    assert await get_task(client, holder["id"]) == holder


async def test_dedup_key_is_scoped_per_type(client: httpx.AsyncClient) -> None:
    a = await client.post("/tasks", json={"type": "a", "dedup_key": "k", "on_duplicate": "reject"})
    b = await client.post("/tasks", json={"type": "b", "dedup_key": "k", "on_duplicate": "reject"})
    assert a.status_code == 201, a.text
    assert b.status_code == 201, b.text
    assert a.json()["task"]["id"] != b.json()["task"]["id"]
    # Same type, different key: no conflict either.
    c = await client.post("/tasks", json={"type": "a", "dedup_key": "K", "on_duplicate": "reject"})
    assert c.status_code == 201, c.text
    # Same type and key: conflict with the right holder.
    d = await client.post("/tasks", json={"type": "b", "dedup_key": "k", "on_duplicate": "reject"})
    assert assert_problem(d, 409)["existing_task_id"] == b.json()["task"]["id"]


async def test_tasks_without_dedup_key_never_collide(client: httpx.AsyncClient) -> None:
    first = await client.post("/tasks", json={"type": "t", "on_duplicate": "reject"})
    second = await client.post("/tasks", json={"type": "t", "on_duplicate": "reject"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["task"]["id"] != second.json()["task"]["id"]


async def test_scheduled_and_running_holders_occupy_the_key(client: httpx.AsyncClient) -> None:
    scheduled = await submit(client, type="s", dedup_key="k", run_after="2999-01-01T00:00:00Z")
    assert scheduled["status"] == "scheduled"
    r = await client.post("/tasks", json={"type": "s", "dedup_key": "k", "on_duplicate": "reject"})
    assert assert_problem(r, 409)["existing_task_id"] == scheduled["id"]

    running = await submit(client, type="r", dedup_key="k")
    (grant,) = await lease(client)
    assert grant["task"]["id"] == running["id"]
    r = await client.post("/tasks", json={"type": "r", "dedup_key": "k"})
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "deduplicated"
    assert r.json()["task"]["id"] == running["id"]
    assert r.json()["task"]["status"] == "running"
    r = await client.post("/tasks", json={"type": "r", "dedup_key": "k", "on_duplicate": "reject"})
    assert assert_problem(r, 409)["existing_task_id"] == running["id"]


async def test_key_is_freed_when_the_holder_completes(client: httpx.AsyncClient) -> None:
    holder = await submit(client, type="sync", dedup_key="acct-1", payload={"v": 1})
    await complete_one(client, holder["id"])
    r = await client.post(
        "/tasks",
        json={"type": "sync", "dedup_key": "acct-1", "on_duplicate": "reject", "payload": 2},
    )
    assert r.status_code == 201, r.text
    assert r.json()["outcome"] == "created"
    fresh = r.json()["task"]
    assert fresh["id"] != holder["id"]
    assert fresh["status"] == "pending"
    assert fresh["payload"] == 2
    # The finished holder is still readable and unchanged by the new submission.
    old = await get_task(client, holder["id"])
    assert old["status"] == "completed"
    assert old["payload"] == {"v": 1}
    # And the new task holds the key now.
    r = await client.post("/tasks", json={"type": "sync", "dedup_key": "acct-1"})
    assert r.status_code == 200
    assert r.json()["task"]["id"] == fresh["id"]


async def test_key_is_freed_when_the_holder_fails_permanently(client: httpx.AsyncClient) -> None:
    holder = await submit(client, type="sync", dedup_key="k")
    (grant,) = await lease(client)
    r = await client.post(
        f"/leases/{grant['lease_id']}/fail", json={"error": "boom", "retryable": False}
    )
    assert r.status_code == 200, r.text
    assert (await get_task(client, holder["id"]))["status"] == "failed"
    r = await client.post("/tasks", json={"type": "sync", "dedup_key": "k"})
    assert r.status_code == 201, r.text
    assert r.json()["task"]["id"] != holder["id"]


# -- batch --------------------------------------------------------------------------


async def test_batch_results_follow_input_order(client: httpx.AsyncClient) -> None:
    items = [{"type": f"t{i % 3}", "payload": {"i": i}, "priority": 255 - i} for i in range(12)]
    r = await client.post("/tasks/batch", json={"tasks": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(items)
    for i, (item, result) in enumerate(zip(items, results, strict=True)):
        assert result["outcome"] == "created", i
        task = result["task"]
        assert task["payload"] == {"i": i}
        assert task["type"] == item["type"]
        assert task["priority"] == item["priority"]
        assert task["status"] == "pending"
        assert await get_task(client, task["id"]) == task
    assert len({res["task"]["id"] for res in results}) == len(items)
    assert sorted(await all_task_ids(client)) == sorted(res["task"]["id"] for res in results)


async def test_batch_deduplicates_within_itself(client: httpx.AsyncClient) -> None:
    items = [
        {"type": "sync", "dedup_key": "k", "payload": "first"},
        {"type": "sync", "dedup_key": "k", "payload": "second"},
        {"type": "sync", "dedup_key": "k", "on_duplicate": "reject", "payload": "third"},
        {"type": "other", "dedup_key": "k", "payload": "other type"},
        {"type": "sync", "dedup_key": "k2", "on_duplicate": "reject", "payload": "new key"},
        {"type": "sync", "payload": "no key"},
    ]
    r = await client.post("/tasks/batch", json={"tasks": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [res["outcome"] for res in results] == [
        "created",
        "deduplicated",
        "rejected",
        "created",
        "created",
        "created",
    ]
    first_id = results[0]["task"]["id"]
    assert results[0]["task"]["payload"] == "first"
    assert results[1]["task"]["id"] == first_id
    assert results[1]["task"]["payload"] == "first"
    assert results[2]["existing_task_id"] == first_id
    assert results[2].get("task") is None
    assert results[3]["task"]["id"] != first_id
    created = {results[i]["task"]["id"] for i in (0, 3, 4, 5)}
    assert len(created) == 4
    assert set(await all_task_ids(client)) == created


async def test_batch_deduplicates_against_existing_tasks(client: httpx.AsyncClient) -> None:
    holder = await submit(client, type="sync", dedup_key="k")
    r = await client.post(
        "/tasks/batch",
        json={
            "tasks": [
                {"type": "sync", "dedup_key": "k", "on_duplicate": "reject"},
                {"type": "sync", "dedup_key": "k"},
                {"type": "sync", "dedup_key": "fresh"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0] == {"outcome": "rejected", "existing_task_id": holder["id"]}
    assert results[1]["outcome"] == "deduplicated"
    assert results[1]["task"]["id"] == results[1]["task_id"] == holder["id"]
    assert results[1]["status"] == results[1]["task"]["status"] == "pending"
    assert results[2]["outcome"] == "created"


async def test_a_batch_that_prefers_minimal_answers_ids_and_statuses_only(
    client: httpx.AsyncClient,
) -> None:
    holder = await submit(client, type="sync", dedup_key="k")
    tasks = [
        {"type": "sync", "dedup_key": "k"},
        {"type": "sync", "dedup_key": "k", "on_duplicate": "supersede"},
        {"type": "sync", "run_after": "2999-01-01T00:00:00Z"},
    ]
    for prefer in ("return=minimal", 'respond-async, RETURN="minimal"; x=1'):
        r = await client.post("/tasks/batch", json={"tasks": tasks}, headers={"Prefer": prefer})
        assert r.status_code == 200, r.text
        assert r.headers["preference-applied"] == "return=minimal"
        results = r.json()["results"]
        assert [x["outcome"] for x in results] == ["deduplicated", "superseded", "created"]
        assert all(x["task"] is None for x in results)
        assert results[0]["task_id"] == holder["id"]
        assert results[1]["replaced_task_id"] == holder["id"] and results[1]["status"] == "pending"
        assert results[2]["status"] == "scheduled"
        stored = (await client.get(f"/tasks/{results[2]['task_id']}")).json()
        assert stored["status"] == "scheduled"
        holder = {"id": results[1]["task_id"]}  # the key's holder for the second round
    # Any other preference (or none) keeps the whole records.
    r = await client.post(
        "/tasks/batch", json={"tasks": tasks[2:]}, headers={"Prefer": "return=representation"}
    )
    assert "preference-applied" not in r.headers
    assert r.json()["results"][0]["task"]["id"] == r.json()["results"][0]["task_id"]


async def test_batch_with_one_invalid_item_writes_nothing(
    client: httpx.AsyncClient, db_url: str
) -> None:
    items: list[dict[str, Any]] = [{"type": "ok", "dedup_key": f"k{i}"} for i in range(5)]
    items[2]["priority"] = 256
    r = await client.post("/tasks/batch", json={"tasks": items})
    problem = assert_problem(r, 422)
    fields = [e["field"] for e in problem["errors"]]
    assert fields == ["tasks[2].priority"]
    assert "tasks[2].priority" in problem["detail"]
    assert await all_task_ids(client) == []
    assert await table_counts(db_url) == (0, 0)
    # Several bad items: each is named by its own index.
    items[2]["priority"] = 1
    items[0]["type"] = ""
    items[4]["tags"] = {"taskmill.owner": "x"}
    r = await client.post("/tasks/batch", json={"tasks": items})
    fields = [e["field"] for e in assert_problem(r, 422)["errors"]]
    assert "tasks[0].type" in fields
    assert "tasks[4].tags" in fields
    assert not any(f.startswith("tasks[2]") for f in fields)
    assert await table_counts(db_url) == (0, 0)
    # The same batch, fixed, goes through whole.
    items[0]["type"] = "ok"
    items[4]["tags"] = {"owner": "x"}
    r = await client.post("/tasks/batch", json={"tasks": items})
    assert r.status_code == 200, r.text
    assert len(await all_task_ids(client)) == 5


async def test_batch_size_limit(make_server: ServerFactory, db_url: str) -> None:
    server = await make_server(max_batch_size=5)
    r = await server.client.post("/tasks/batch", json={"tasks": [{"type": "t"}] * 6})
    problem = assert_problem(r, 422)
    assert [e["field"] for e in problem["errors"]] == ["tasks"]
    assert await table_counts(db_url) == (0, 0)
    r = await server.client.post("/tasks/batch", json={"tasks": [{"type": "t"}] * 5})
    assert r.status_code == 200, r.text
    assert [res["outcome"] for res in r.json()["results"]] == ["created"] * 5


async def test_empty_batch_is_invalid(client: httpx.AsyncClient, db_url: str) -> None:
    bodies: list[dict[str, Any]] = [{"tasks": []}, {}, {"tasks": None}, {"tasks": {"type": "t"}}]
    for body in bodies:
        r = await client.post("/tasks/batch", json=body)
        problem = assert_problem(r, 422)
        assert [e["field"] for e in problem["errors"]] == ["tasks"], body
    assert await table_counts(db_url) == (0, 0)


async def test_batch_payload_over_limit_names_the_item(
    make_server: ServerFactory, db_url: str
) -> None:
    server = await make_server(max_payload_bytes=1000)
    items = [
        {"type": "t", "payload": "x" * 900},
        {"type": "t", "payload": "small"},
        {"type": "t", "payload": {"blob": "y" * 2000}},
        {"type": "t"},
    ]
    r = await server.client.post("/tasks/batch", json={"tasks": items})
    problem = assert_problem(r, 413)
    assert [e["field"] for e in problem["errors"]] == ["tasks[2].payload"]
    assert "tasks[2]" in problem["detail"]
    assert await table_counts(db_url) == (0, 0)
    assert (await server.client.get("/tasks")).json()["tasks"] == []
