"""GET /events against real uvicorn servers: two replicas, resume, filters, keep-alive."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import asyncpg
import httpx

from tests.conftest import Server, ServerFactory
from tests.e2e.sse import follow, wait_for
from tests.helpers import eventually, submit


def horizon(server: Server) -> Any:
    """The replica's event horizon (to wait for its probes, never to drive it)."""
    return server.uvicorn.config.app.state.taskmill.events.horizon  # type: ignore[attr-defined]


async def test_event_caused_on_replica_b_is_streamed_by_replica_a(
    make_server: ServerFactory,
) -> None:
    a = await make_server()
    b = await make_server()
    async with follow(a.url) as stream:
        await eventually(lambda: _probes(a), lambda n: n >= 2)
        task = await submit(b.client, type="transfer", group="g1", tags={"profile": "dr"})
        await wait_for(stream, lambda s: any(e["task_id"] == task["id"] for e in s.events))
    (created,) = [e for e in stream.events if e["task_id"] == task["id"]]
    assert created["event"] == "task.created"
    assert created["type"] == "transfer"
    assert created["group"] == "g1"
    assert created["tags"] == {"profile": "dr"}
    assert created["status"] == "pending"
    assert isinstance(created["id"], int) and isinstance(created["at"], str)


async def _probes(server: Server) -> int:
    return int(horizon(server).probes)


async def test_lifecycle_events_in_order(server: Server) -> None:
    base = await _probes(server)  # the probe loop runs only while a client is in
    async with follow(server.url, {"type": "job"}) as stream:
        await eventually(lambda: _probes(server), lambda n: n >= base + 2)
        task = await submit(server.client, type="job")
        r = await server.client.post("/leases", json={"worker_id": "w", "types": ["job"]})
        lease_id = r.json()["leases"][0]["lease_id"]
        r = await server.client.post(
            f"/leases/{lease_id}/heartbeat", json={"progress": {"fraction": 0.5}}
        )
        assert r.status_code == 200
        r = await server.client.post(f"/leases/{lease_id}/complete", json={"result": 7})
        assert r.status_code == 200
        await wait_for(stream, lambda s: bool(s.of("task.completed")))
    names = [e["event"] for e in stream.events if e["task_id"] == task["id"]]
    assert names == ["task.created", "task.leased", "task.progress", "task.completed"]
    assert stream.of("task.progress")[0]["progress"] == {"fraction": 0.5}
    assert stream.ids == sorted(set(stream.ids))


async def test_a_late_commit_of_a_lower_id_is_not_skipped(server: Server, db_url: str) -> None:
    """Event ids are drawn in one order and committed in another: the stream waits."""
    late = await asyncpg.connect(db_url)
    other = await asyncpg.connect(db_url)
    try:
        base = await _probes(server)  # the probe loop runs only while a client is in
        async with follow(server.url, {"event": "group.paused"}) as stream:
            await eventually(lambda: _probes(server), lambda n: n >= base + 2)
            tx = late.transaction()
            await tx.start()
            low = await late.fetchval(
                "INSERT INTO events (event, data) VALUES ('group.paused', '{}') RETURNING id"
            )
            high = await other.fetchval(
                "INSERT INTO events (event, data) VALUES ('group.paused', '{}') RETURNING id"
            )
            assert high > low
            # Give the replica several probes while `high` is committed and `low` is not.
            seen = await _probes(server)
            await eventually(lambda: _probes(server), lambda n: n >= seen + 3)
            assert stream.ids == []  # nothing may pass the open writer
            await tx.commit()
            await wait_for(stream, lambda s: len(s.ids) == 2)
        assert stream.ids == [low, high]
        # And a client resuming after `low` gets `high` exactly once.
        async with follow(server.url, {"event": "group.paused"}, last_event_id=str(low)) as again:
            await wait_for(again, lambda s: len(s.ids) >= 1)
        assert again.ids == [high]
    finally:
        await late.close()
        await other.close()


async def test_resume_with_last_event_id_on_another_replica_while_writes_continue(
    make_server: ServerFactory, db_url: str
) -> None:
    a = await make_server()
    b = await make_server()
    n_writers, per_writer = 4, 15

    async def writer(client: httpx.AsyncClient, w: int) -> list[str]:
        ids = []
        for i in range(per_writer):
            task = await submit(client, type="resume", tags={"w": str(w), "i": str(i)})
            ids.append(task["id"])
        return ids

    params = {"event": "task.created", "type": "resume"}
    async with follow(a.url, params) as first:
        await eventually(lambda: _probes(a), lambda n: n >= 2)
        writers = [
            asyncio.create_task(writer((a if w % 2 else b).client, w)) for w in range(n_writers)
        ]
        await wait_for(first, lambda s: len(s.ids) >= 10)
    # Disconnected mid-stream while the writers go on; resume on the other replica.
    last = first.ids[-1]
    async with follow(b.url, params, last_event_id=str(last)) as second:
        submitted = {t for ids in await asyncio.gather(*writers) for t in ids}
        await wait_for(
            second, lambda s: {e["task_id"] for e in first.events + s.events} >= submitted
        )
    ids = first.ids + second.ids
    assert ids == sorted(ids) and len(ids) == len(set(ids)), "duplicate or out of order"
    task_ids = [e["task_id"] for e in first.events + second.events]
    assert sorted(task_ids) == sorted(submitted)
    # Nothing the database holds in that range was skipped.
    conn = await asyncpg.connect(db_url)
    try:
        stored = await conn.fetch(
            "SELECT id FROM events WHERE event = 'task.created' AND type = 'resume'"
            " AND id <= $1 ORDER BY id",
            ids[-1],
        )
    finally:
        await conn.close()
    assert [r["id"] for r in stored] == ids


async def test_filters_by_type_event_task_and_tags(server: Server, db_url: str) -> None:
    c = server.client
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "wanted"}, "type"),
        ({"tag.profile": "dr", "tag.dir": ["ltr", "rtl"]}, "tags"),
    ]
    for params, _ in cases:
        # Resume from the newest event so far: what follows is exactly what this case
        # submits, however soon the server takes up the new stream.
        conn = await asyncpg.connect(db_url)
        try:
            start = await conn.fetchval("SELECT coalesce(max(id), 0) FROM events")
        finally:
            await conn.close()
        async with follow(server.url, params, last_event_id=str(start)) as stream:
            await submit(c, type="other", tags={"profile": "dr", "dir": "up"})
            await submit(c, type="other", tags={"profile": "prod", "dir": "ltr"})
            marker = await submit(c, type="wanted", tags={"profile": "dr", "dir": "rtl"})
            await wait_for(stream, lambda s: bool(s.events))
        # Events stream in id order: the first one through the filter is the marker.
        assert stream.events[0]["task_id"] == marker["id"], params

    target = await submit(c, type="solo")
    base = await _probes(server)  # the probe loop runs only while a client is in
    async with follow(server.url, [("task_id", target["id"]), ("event", "task.leased")]) as stream:
        await eventually(lambda: _probes(server), lambda n: n >= base + 2)
        other = await submit(c, type="solo")
        r = await c.post("/leases", json={"worker_id": "w", "types": ["solo"], "max_tasks": 2})
        assert len(r.json()["leases"]) == 2
        await wait_for(stream, lambda s: bool(s.events))
    assert [(e["task_id"], e["event"]) for e in stream.events] == [(target["id"], "task.leased")]
    assert other["id"] != target["id"]


async def test_bad_filters_and_last_event_id_are_422(server: Server) -> None:
    for params, headers in (
        ({"tag.bad key": "x"}, {}),
        ({"event": "Not An Event"}, {}),
        ({}, {"Last-Event-ID": "12abc"}),
        ({"last_event_id": "-1"}, {}),
    ):
        r = await server.client.get("/events", params=params, headers=headers)
        assert r.status_code == 422, (params, headers, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_idle_stream_gets_keepalive_comments(make_server: ServerFactory) -> None:
    server = await make_server(events_keepalive_seconds=0.2)
    async with follow(server.url, {"type": "never"}) as stream:
        await wait_for(stream, lambda s: s.comments >= 2)
    assert stream.events == []


async def test_a_client_that_never_reads_does_not_block_the_service(
    make_server: ServerFactory,
) -> None:
    server = await make_server(events_send_timeout_seconds=2)
    c = server.client
    host, port = server.url.removeprefix("http://").split(":")
    # A client with a tiny receive window that never reads a byte.
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((host, int(port)))
    stuck.sendall(f"GET /events?last_event_id=0 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    try:
        async with follow(server.url, {"event": "task.created"}, last_event_id="0") as reader:
            big = {"blob": "x" * 2000}
            batches = 4
            for _ in range(batches):
                r = await c.post(
                    "/tasks/batch", json={"tasks": [{"type": "bulk", "payload": big}] * 250}
                )
                assert r.status_code == 200
            # The service keeps answering at once, and another client gets everything.
            r = await c.post("/leases", json={"worker_id": "w", "max_tasks": 5})
            assert len(r.json()["leases"]) == 5
            await wait_for(reader, lambda s: len(s.events) >= batches * 250, timeout=30)
    finally:
        stuck.close()


async def test_a_long_transaction_in_another_database_does_not_hold_the_stream(
    server: Server, pg_admin_url: str
) -> None:
    elsewhere = await asyncpg.connect(pg_admin_url)  # the maintenance database
    try:
        tx = elsewhere.transaction()
        await tx.start()
        await elsewhere.fetchval("SELECT txid_current()")  # holds a transaction id
        base = await _probes(server)  # the probe loop runs only while a client is in
        async with follow(server.url, {"type": "meanwhile"}) as stream:
            await eventually(lambda: _probes(server), lambda n: n >= base + 2)
            task = await submit(server.client, type="meanwhile")
            await wait_for(stream, lambda s: bool(s.events))
        assert stream.events[0]["task_id"] == task["id"]
        await tx.rollback()
    finally:
        await elsewhere.close()


async def test_a_new_stream_after_an_idle_spell_starts_now(server: Server) -> None:
    base = await _probes(server)  # the probe loop runs only while a client is in
    async with follow(server.url, {"type": "idle"}) as stream:
        await eventually(lambda: _probes(server), lambda n: n >= base + 2)
    old = await submit(server.client, type="idle")  # while nobody listens
    await eventually(lambda: asyncio.sleep(0, horizon(server).safe), lambda s: s is None)
    async with follow(server.url, {"type": "idle"}) as stream:
        await eventually(lambda: asyncio.sleep(0, horizon(server).safe), lambda s: s is not None)
        new = await submit(server.client, type="idle")
        await wait_for(stream, lambda s: bool(s.events))
    assert [e["task_id"] for e in stream.events] == [new["id"]]
    assert old["id"] != new["id"]
