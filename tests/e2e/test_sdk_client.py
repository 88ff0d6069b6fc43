"""The producer client and the SDK's error mapping and retries, against real servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from taskmill_sdk import (
    AsyncClient,
    Client,
    DuplicateRejected,
    LeaseConflict,
    LeaseGone,
    LeaseLost,
    NotFound,
    RetryPolicy,
    TagKeys,
    TagValue,
    TagValues,
    TaskContext,
    TaskmillError,
    Unavailable,
    ValidationError,
    Worker,
    task_spec,
)
from taskmill_sdk._http import AsyncHTTP, Call, ignore

from app.main import create_app
from tests import conftest
from tests.conftest import Server
from tests.e2e.sdk_support import running
from tests.helpers import eventually, get_task, lease, submit


async def test_submit_get_query_and_batch(server: Server) -> None:
    async with AsyncClient(server.url) as client:
        created = await client.submit(
            "transfer", {"key": "a"}, dedup_key="a", tags={"profile": "dr"}, priority=5
        )
        assert created.outcome == "created" and created.task is not None
        again = await client.submit("transfer", {"key": "a"}, dedup_key="a")
        assert again.outcome == "deduplicated" and again.task is not None
        assert again.task.id == created.task.id
        with pytest.raises(DuplicateRejected) as rejected:
            await client.submit("transfer", dedup_key="a", on_duplicate="reject")
        assert rejected.value.existing_task_id == created.task.id
        assert rejected.value.status == 409 and rejected.value.code == "duplicate-rejected"

        results = await client.submit_batch(
            [task_spec("transfer", i, tags={"profile": "prod"}) for i in range(5)]
            + [task_spec("transfer", dedup_key="a", on_duplicate="reject")]
        )
        assert [r.outcome for r in results] == ["created"] * 5 + ["rejected"]
        assert results[-1].existing_task_id == created.task.id
        assert all(r.task and r.task_id == r.task.id and r.status == "pending" for r in results[:5])
        assert (results[-1].task_id, results[-1].status) == (None, None)
        assert (created.task_id, created.status) == (created.task.id, "pending")

        task = await client.get(created.task.id)
        assert task.payload == {"key": "a"} and task.priority == 5 and task.status == "pending"
        everything = [t async for t in client.query(type="transfer", page_size=2)]
        assert len(everything) == 6
        prod = [t async for t in client.query(tags={"profile": "prod"})]
        assert len(prod) == 5 and all(t.tags == {"profile": "prod"} for t in prod)
        groups = await client.aggregate(["tag.profile"], sum=["priority"])
        counts = {g.key["tag.profile"]: g.count for g in groups}
        assert counts == {"dr": 1, "prod": 5}

        snapshot = await client.snapshot()
        assert snapshot["statuses"]["pending"] == 6


async def test_tag_keys_and_value_counts(server: Server) -> None:
    media = [task_spec("job", i, tags={"team": "media", "dst/region": "eu"}) for i in range(3)]
    ml = [task_spec("job", i, tags={"team": "ml", "tier": "gold"}) for i in range(2)]
    ops = [task_spec("job", tags={"team": "ops"}), task_spec("urgent", tags={"team": "ops"})]
    async with AsyncClient(server.url) as client:
        await client.submit_batch(media + ml + ops)
        (held,) = await lease(server.client, types=["urgent"])  # one ops task runs
        assert held["task"]["tags"] == {"team": "ops"}

        assert (await client.tag_keys()).keys == ["dst/region", "team", "tier"]
        assert (await client.tag_keys("t")).keys == ["team", "tier"]
        assert (await client.tag_keys(limit=1)).keys == ["dst/region"]

        team = await client.tag_values("team")
        assert team.counts == {"media": 3, "ml": 2, "ops": 2}
        assert team.values[0] == TagValue("media", 3)  # the most common first
        assert [v.count for v in team.values] == [3, 2, 2]
        running_ = await client.tag_values("team", status="running")
        assert running_.counts == {"ops": 1}
        live = await client.tag_values("team", status=["pending", "running"], prefix="m")
        assert live.counts == {"media": 3, "ml": 2}
        assert (await client.tag_values("team", limit=1)).counts == {"media": 3}
        # A key with "/" in it: the route takes the rest of the path up to /values.
        assert (await client.tag_values("dst/region")).counts == {"eu": 3}
        assert (await client.tag_values("nobody-uses-this")).values == []

    def blocking() -> tuple[TagKeys, TagValues]:
        with Client(server.url) as client:
            return client.tag_keys(prefix="te"), client.tag_values("team", status="pending")

    keys, pending = await asyncio.to_thread(blocking)
    assert keys.keys == ["team"]
    assert pending.counts == {"media": 3, "ml": 2, "ops": 1}


async def test_the_blocking_client(server: Server) -> None:
    def use() -> list[str]:
        with Client(server.url) as client:
            first = client.submit("sync", 1)
            assert first.task is not None
            client.submit_batch([task_spec("sync", 2), task_spec("sync", 3)])
            assert client.get(first.task.id).payload == 1
            with pytest.raises(NotFound):
                client.get("01ARZ3NDEKTSV4RRFFQ69G5FAV")
            return [t.id for t in client.query(type="sync")]

    ids = await asyncio.to_thread(use)
    assert len(ids) == 3


async def test_problem_json_maps_to_documented_exceptions(server: Server) -> None:
    async with AsyncClient(server.url) as client:
        with pytest.raises(ValidationError) as invalid:
            await client.submit("bad type!", priority=999)
        fields = {e.field for e in invalid.value.errors}
        assert {"type", "priority"} <= fields
        assert isinstance(invalid.value, TaskmillError) and invalid.value.status == 422
        with pytest.raises(NotFound):
            await client.get("nope")

    await submit(server.client, type="x")
    (held,) = await lease(server.client, lease_seconds=0.2)
    http = AsyncHTTP(httpx.AsyncClient(base_url=server.url))

    def complete(lease_id: str) -> Call[None]:
        return Call("POST", f"/leases/{lease_id}/complete", ignore, json={})

    try:
        await eventually(
            lambda: get_task(server.client, held["task"]["id"]),
            lambda t: t["status"] == "pending",
        )
        with pytest.raises(LeaseGone) as gone:
            await http.send(complete(held["lease_id"]))
        assert isinstance(gone.value, LeaseLost)
        (again,) = await lease(server.client)
        await http.send(complete(again["lease_id"]))
        with pytest.raises(LeaseConflict) as conflict:
            await http.send(complete(again["lease_id"]))
        assert conflict.value.task_status == "completed"
        assert isinstance(conflict.value, LeaseLost)
    finally:
        await http.aclose()


class FlakyTransport(httpx.AsyncBaseTransport):
    """Answers the first ``n`` requests 503 itself; passes the rest to the real server."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.real = httpx.AsyncHTTPTransport()
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.left > 0:
            self.left -= 1
            self.refused += 1
            body = (
                b'{"type":"urn:taskmill:problem:unavailable","title":"x","status":503,"detail":"x"}'
            )
            return httpx.Response(
                503, content=body, headers={"content-type": "application/problem+json"}
            )
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_injected_transport_and_retries_of_503(server: Server) -> None:
    flaky = FlakyTransport(3)
    fast = RetryPolicy(base_seconds=0.01, max_seconds=0.05)
    async with AsyncClient(server.url, transport=flaky, retry=fast) as client:
        result = await client.submit("retried")  # no dedup key: still safe, 503 changed nothing
        assert result.outcome == "created" and flaky.refused == 3
    give_up = RetryPolicy(max_attempts=2, base_seconds=0.01)
    async with AsyncClient(server.url, transport=FlakyTransport(5), retry=give_up) as client:
        with pytest.raises(Unavailable):
            await client.submit("retried")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _serve_on(db_url: str, port: int) -> AsyncIterator[None]:
    app = create_app(conftest.test_settings(), db_url)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started or task.done()), bool, timeout=30)
    if task.done():
        task.result()
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def test_worker_and_client_ride_out_a_server_restart(db_url: str) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    quick = RetryPolicy(max_attempts=None, base_seconds=0.05, max_seconds=0.3)
    worker = Worker(url, wait_seconds=1, lease_seconds=10, shutdown_timeout=5, retry=quick)
    results: list[Any] = []

    @worker.handler("echo")
    async def echo(ctx: TaskContext) -> Any:
        results.append(ctx.payload)
        return ctx.payload

    async with AsyncClient(url, retry=quick) as client, running(worker):
        async with _serve_on(db_url, port):
            first = await client.submit("echo", "before")
            assert first.task_id is not None
            first_id = first.task_id
            await eventually(lambda: client.get(first_id), lambda t: t.status == "completed")
        # The server is down: a read started now waits (retrying) until it is back.
        pending_read = asyncio.create_task(client.get(first_id))
        await eventually(lambda: asyncio.sleep(0, worker.stats["leased"]), lambda n: n == 1)
        async with _serve_on(db_url, port):
            assert (await pending_read).status == "completed"
            second = await client.submit("echo", "after")
            assert second.task_id is not None
            second_id = second.task_id
            done = await eventually(
                lambda: client.get(second_id), lambda t: t.status == "completed", 20
            )
    assert done.result == "after"
    assert results == ["before", "after"]


async def test_client_follows_the_event_stream(server: Server) -> None:
    first = await submit(server.client, type="watched", tags={"team": "a"})
    await submit(server.client, type="ignored")
    second = await submit(server.client, type="watched", tags={"team": "b"})
    seen: list[tuple[str | None, str]] = []
    async with AsyncClient(server.url) as client:
        # From the start of the retained history ("0"), filtered by type.
        stream = client.events(type="watched", last_event_id="0")
        async for event in stream:
            seen.append((event.task_id, event.event))
            assert event.data["type"] == "watched"
            if event.task_id == second["id"]:
                break
        await stream.aclose()
    assert seen == [(first["id"], "task.created"), (second["id"], "task.created")]

    def blocking() -> list[str]:
        with Client(server.url) as client:
            stream = client.events(tags={"team": "b"}, last_event_id="0")
            event = next(stream)
            stream.close()
            return [event.event, str(event.task_id)]

    assert await asyncio.to_thread(blocking) == ["task.created", second["id"]]
