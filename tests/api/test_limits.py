"""Limits that test_errors.py, test_leasing.py and test_listing.py do not already pin down:
each refusal is problem+json naming the field, and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.support import assert_problem, error_fields, table_counts
from tests.conftest import ServerFactory
from tests.helpers import lease, submit


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"worker_id": "w", "max_tasks": 0}, "max_tasks"),
        ({"worker_id": "w", "max_tasks": 1001}, "max_tasks"),
        ({"worker_id": "w", "max_tasks": "many"}, "max_tasks"),
        ({"worker_id": "w", "wait_seconds": -1}, "wait_seconds"),
        ({"worker_id": "w", "wait_seconds": 60.5}, "wait_seconds"),
        ({"worker_id": "w", "lease_seconds": 0}, "lease_seconds"),
        ({"worker_id": "w", "lease_seconds": 3601}, "lease_seconds"),
        ({"worker_id": "w", "types": ["t"] * 101}, "types"),
        ({"worker_id": "w", "groups": ["g"] * 101}, "groups"),
        ({"worker_id": ""}, "worker_id"),
        ({"worker_id": "w" * 257}, "worker_id"),
        ({}, "worker_id"),
    ],
)
async def test_lease_request_limits_name_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    await submit(client)
    r = await client.post("/leases", json=body)
    assert field in error_fields(r), r.text
    assert field in r.json()["detail"]
    assert await lease(client) != []  # nothing was leased by the refused call


async def test_complete_batch_size_limit(make_server: ServerFactory) -> None:
    server = await make_server(max_batch_size=3)
    client = server.client
    for _ in range(4):
        await submit(client)
    leases = await lease(client, n=4)
    items = [{"lease_id": x["lease_id"]} for x in leases]
    r = await client.post("/leases/complete", json={"items": items})
    assert error_fields(r) == ["items"]
    assert "3" in r.json()["detail"]
    # Nothing was completed: the same items in two legal batches all succeed.
    for part in (items[:3], items[3:]):
        r = await client.post("/leases/complete", json={"items": part})
        assert r.status_code == 200, r.text
        assert all(x["ok"] for x in r.json()["results"]), r.text


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
async def test_json_deeper_than_the_parser_is_a_422_naming_the_body(
    client: httpx.AsyncClient, db_url: str, depth: int
) -> None:
    # Beyond Python's parser recursion (about 1000 levels) FastAPI itself would answer
    # 400 "error parsing the body"; ours is a validation error like any other.
    content = b'{"type": "t", "payload": ' + b"[" * depth + b"]" * depth + b"}"
    r = await client.post("/tasks", content=content, headers={"content-type": "application/json"})
    assert error_fields(r) == ["body"]
    assert "deep" in r.json()["detail"]
    r = await client.post(
        "/leases/complete",
        content=b'{"items": [{"lease_id": "x", "result": ' + b"[" * depth + b"]" * depth + b"}]}",
        headers={"content-type": "application/json"},
    )
    assert error_fields(r) == ["body"]
    assert await table_counts(db_url) == (0, 0)


async def test_json_deeper_than_the_limit_but_parseable_names_the_field(
    client: httpx.AsyncClient,
) -> None:
    deep: Any = "x"
    for _ in range(200):
        deep = {"a": deep}
    await submit(client)
    (granted,) = await lease(client)
    r = await client.post(f"/leases/{granted['lease_id']}/heartbeat", json={"state": deep})
    assert error_fields(r) == ["state"]
    r = await client.post(f"/leases/{granted['lease_id']}/complete", json={"result": deep})
    assert error_fields(r) == ["result"]
    r = await client.post(f"/leases/{granted['lease_id']}/fail", json={"error": deep})
    assert_problem(r, 422)


async def test_body_that_is_not_utf8_is_a_422_naming_the_body(
    client: httpx.AsyncClient, db_url: str
) -> None:
    for content in (b'{"type": "\xff\xfe"}', b'{"type": "t", "label": "\xc3"}'):
        r = await client.post(
            "/tasks", content=content, headers={"content-type": "application/json"}
        )
        assert error_fields(r) == ["body"]
    assert await table_counts(db_url) == (0, 0)


async def test_page_size_limit_names_the_field(client: httpx.AsyncClient) -> None:
    for limit in ("0", "1001", "-5", "x"):
        r = await client.get("/tasks", params={"limit": limit})
        assert error_fields(r) == ["limit"], r.text
