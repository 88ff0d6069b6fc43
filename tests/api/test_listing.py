"""GET /tasks: filters, limits, keyset pagination (also under concurrent inserts)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest

from tests.api.support import assert_problem, error_fields
from tests.helpers import lease, submit


async def page(client: httpx.AsyncClient, params: Any) -> dict[str, Any]:
    """One page of GET /tasks."""
    r = await client.get("/tasks", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) >= {"tasks", "next_cursor"}
    return body


async def ids(client: httpx.AsyncClient, params: Any = None) -> set[str]:
    """The ids of one page (asserting there is no further page)."""
    body = await page(client, params or {})
    assert body["next_cursor"] is None
    found = [t["id"] for t in body["tasks"]]
    assert len(found) == len(set(found))
    return set(found)


async def walk(client: httpx.AsyncClient, params: dict[str, Any]) -> list[str]:
    """Every id of a listing, following next_cursor to the end."""
    seen: list[str] = []
    cursor = None
    for _ in range(10_000):
        body = await page(client, {**params, **({"cursor": cursor} if cursor else {})})
        seen.extend(t["id"] for t in body["tasks"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        assert body["tasks"], "a page with a next_cursor must not be empty"
    raise AssertionError("pagination did not end")


async def batch(client: httpx.AsyncClient, items: list[dict[str, Any]]) -> list[str]:
    r = await client.post("/tasks/batch", json={"tasks": items})
    assert r.status_code == 200, r.text
    return [res["task"]["id"] for res in r.json()["results"]]


async def test_empty_listing(client: httpx.AsyncClient) -> None:
    assert await page(client, {}) == {"tasks": [], "next_cursor": None}


async def test_listing_returns_full_records(client: httpx.AsyncClient) -> None:
    task = await submit(client, type="a", payload={"x": [1]}, tags={"k": "v"}, group="g")
    (listed,) = (await page(client, {}))["tasks"]
    assert listed == task


async def test_status_filter_is_a_set(client: httpx.AsyncClient) -> None:
    done = await submit(client, type="done")
    (grant,) = await lease(client, types=["done"])
    r = await client.post(f"/leases/{grant['lease_id']}/complete", json={})
    assert r.status_code == 200, r.text
    running = await submit(client, type="run")
    (grant,) = await lease(client, types=["run"])
    assert grant["task"]["id"] == running["id"]
    pending = [await submit(client, type="p") for _ in range(3)]
    scheduled = await submit(client, type="s", run_after="2999-01-01T00:00:00Z")

    pending_ids = {t["id"] for t in pending}
    assert await ids(client, {"status": "pending"}) == pending_ids
    assert await ids(client, {"status": "completed"}) == {done["id"]}
    assert await ids(client, {"status": "running"}) == {running["id"]}
    assert await ids(client, {"status": ["pending", "scheduled"]}) == pending_ids | {
        scheduled["id"]
    }
    assert await ids(client, {"status": ["completed", "running", "completed"]}) == {
        done["id"],
        running["id"],
    }
    assert await ids(client, {"status": "failed"}) == set()
    everything = pending_ids | {done["id"], running["id"], scheduled["id"]}
    assert await ids(client) == everything
    # Every listed task really has a requested status.
    body = await page(client, {"status": ["pending", "running"]})
    assert {t["status"] for t in body["tasks"]} == {"pending", "running"}


async def test_type_and_group_filters(client: httpx.AsyncClient) -> None:
    made = {
        ("a", "g1"): await submit(client, type="a", group="g1"),
        ("a", "g2"): await submit(client, type="a", group="g2"),
        ("b", "g1"): await submit(client, type="b", group="g1"),
        ("b", None): await submit(client, type="b"),
        ("c", None): await submit(client, type="c"),
    }

    def pick(pred: Any) -> set[str]:
        return {t["id"] for key, t in made.items() if pred(*key)}

    assert await ids(client, {"type": "a"}) == pick(lambda ty, g: ty == "a")
    assert await ids(client, {"type": ["a", "c"]}) == pick(lambda ty, g: ty in ("a", "c"))
    assert await ids(client, {"group": "g1"}) == pick(lambda ty, g: g == "g1")
    assert await ids(client, {"group": ["g1", "g2"]}) == pick(lambda ty, g: g is not None)
    # Different filters AND together.
    assert await ids(client, {"type": "b", "group": "g1"}) == pick(
        lambda ty, g: (ty, g) == ("b", "g1")
    )
    assert await ids(client, {"type": "a", "status": "pending", "group": "g2"}) == pick(
        lambda ty, g: (ty, g) == ("a", "g2")
    )
    assert await ids(client, {"type": "zzz"}) == set()
    assert await ids(client, {"group": "nope"}) == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1e400"}, "limit"),
        ({"limit": str(2**70)}, "limit"),
        ({"limit": ""}, "limit"),
        ({"status": "done"}, "status[0]"),
        ({"status": ["pending", "PENDING"]}, "status[1]"),
        ({"type": "bad type"}, "type[0]"),
        ({"type": ""}, "type[0]"),
        ({"type": "\x00"}, "type[0]"),
        ({"group": ""}, "group[0]"),
        ({"group": "g\x00"}, "group[0]"),
        ({"parent_id": "p\x00"}, "parent_id"),
        ({"cursor": "c" * 201}, "cursor"),
    ],
)
async def test_bad_query_is_422(client: httpx.AsyncClient, params: Any, field: str) -> None:
    await submit(client)
    r = await client.get("/tasks", params=params)
    assert field in error_fields(r)


async def test_limit_bounds_are_inclusive(client: httpx.AsyncClient) -> None:
    await batch(client, [{"type": "t"}] * 3)
    body = await page(client, {"limit": 1})
    assert len(body["tasks"]) == 1
    assert body["next_cursor"] is not None
    body = await page(client, {"limit": 1000})
    assert len(body["tasks"]) == 3
    assert body["next_cursor"] is None


async def test_default_limit_is_100(client: httpx.AsyncClient) -> None:
    made = await batch(client, [{"type": "t"}] * 150)
    body = await page(client, {})
    assert len(body["tasks"]) == 100
    assert body["next_cursor"] is not None
    assert set(await walk(client, {})) == set(made)


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "not-base64",
        base64.urlsafe_b64encode(b"nope").decode(),
        base64.urlsafe_b64encode(b"\x00" * 26).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
        base64.urlsafe_b64encode(b"0" * 25 + b"\n").decode(),
        # A well-formed id plus a newline: not an id this server issues.
        base64.urlsafe_b64encode(b"0" * 26 + b"\n").decode(),
        base64.urlsafe_b64encode(b"0" * 26).decode() + "==extra",
        "\x00",
        "",
    ],
)
async def test_invalid_cursor_is_422(client: httpx.AsyncClient, cursor: str) -> None:
    await submit(client)
    r = await client.get("/tasks", params={"cursor": cursor})
    if cursor == "" and r.status_code == 200:
        # An empty cursor may be read as "no cursor": the first page.
        assert len(r.json()["tasks"]) == 1
        return
    problem = assert_problem(r, 422)
    assert "cursor" in [e["field"] for e in problem["errors"]]


async def test_pagination_visits_every_task_once(client: httpx.AsyncClient) -> None:
    made = await batch(client, [{"type": "t", "payload": i} for i in range(23)])
    for limit in (1, 5, 7, 22, 23, 24):
        seen = await walk(client, {"limit": limit})
        assert len(seen) == len(set(seen)) == 23, limit
        assert set(seen) == set(made)
        # A stable order: the same every time, pages in sequence.
        assert seen == sorted(seen)
    # Page sizes: full pages, then the rest; no empty trailing page.
    sizes = []
    cursor = None
    while True:
        body = await page(client, {"limit": 7, **({"cursor": cursor} if cursor else {})})
        sizes.append(len(body["tasks"]))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sizes == [7, 7, 7, 2]


async def test_exact_multiple_of_limit_has_no_empty_last_page(client: httpx.AsyncClient) -> None:
    await batch(client, [{"type": "t"}] * 10)
    first = await page(client, {"limit": 5})
    assert first["next_cursor"] is not None
    second = await page(client, {"limit": 5, "cursor": first["next_cursor"]})
    assert len(second["tasks"]) == 5
    assert second["next_cursor"] is None


async def test_pagination_with_filters(client: httpx.AsyncClient) -> None:
    a = await batch(client, [{"type": "a", "payload": i} for i in range(9)])
    await batch(client, [{"type": "b"}] * 9)
    c = await batch(client, [{"type": "c", "group": "g"}] * 4)
    seen = await walk(client, {"type": ["a", "c"], "limit": 2})
    assert sorted(seen) == sorted(a + c)
    assert len(seen) == len(set(seen))
    # A cursor is a position, not a filter: reused with another filter it still works.
    body = await page(client, {"type": "a", "limit": 3})
    rest = await walk(client, {"type": "c", "cursor": body["next_cursor"]})
    assert set(rest) <= set(c)


async def test_pagination_is_stable_under_concurrent_inserts(client: httpx.AsyncClient) -> None:
    existing = set(await batch(client, [{"type": "old", "payload": i} for i in range(60)]))
    added: list[str] = []
    paging_done = asyncio.Event()
    progress = asyncio.Event()

    async def producer() -> None:
        # Keep submitting, singly and in batches, until the pager has finished.
        i = 0
        while not paging_done.is_set():
            if i % 3 == 0:
                added.extend(await batch(client, [{"type": "new", "payload": i}] * 3))
            else:
                added.append((await submit(client, type="new", payload=i))["id"])
            progress.set()
            i += 1

    async def pager() -> tuple[list[str], int]:
        seen: list[str] = []
        cursor = None
        added_at_first_page = -1
        while True:
            body = await page(client, {"limit": 4, **({"cursor": cursor} if cursor else {})})
            if added_at_first_page < 0:
                added_at_first_page = len(added)
                # Make sure the two interleave: wait for a submit after this first page.
                while len(added) <= added_at_first_page:
                    progress.clear()
                    await asyncio.wait_for(progress.wait(), timeout=10)
            seen.extend(t["id"] for t in body["tasks"])
            cursor = body["next_cursor"]
            if cursor is None:
                return seen, len(added) - added_at_first_page
            assert len(seen) < 100_000

    producing = asyncio.create_task(producer())
    try:
        seen, added_while_paging = await pager()
    finally:
        paging_done.set()
        await producing
    # The two really interleaved: tasks were added between the first and the last page.
    assert added_while_paging > 0
    assert len(seen) == len(set(seen)), "a task was listed twice"
    assert existing <= set(seen), "a task that existed before paging was missed"
    assert set(seen) <= existing | set(added)
    # Everything inserted while paging is there afterwards.
    assert set(await walk(client, {"limit": 1000})) == existing | set(added)
