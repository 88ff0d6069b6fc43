"""Tag queries, aggregates, value counts and discovery checked against a model in Python.

A seeded random data set is submitted and moved through several statuses; every answer
of the service is compared with the same question answered over the model.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.helpers import lease

PROFILES = ["dr", "mirror", "backup", "a%b"]
ENDPOINTS = ["s3://eu-1", "s3://eu-2", "s3://us-1", "gs://x", "az://y"]
Model = list[dict[str, Any]]


async def _seed(client: httpx.AsyncClient, n: int = 240, seed: int = 7) -> Model:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        tags = {"profile": rng.choice(PROFILES), "dst": rng.choice(ENDPOINTS)}
        if rng.random() < 0.5:
            tags["dir"] = rng.choice(["ltr", "rtl"])
        items.append(
            {
                "type": rng.choice(["copy", "delete"]),
                "priority": rng.randrange(0, 5),
                "group": rng.choice([None, "g1", "g2"]),
                "tags": tags,
                "expected_io": {"net_tx_bytes": rng.randrange(0, 10_000), "read_bytes": i},
            }
        )
    model: Model = []
    for start in range(0, n, 100):
        r = await client.post("/tasks/batch", json={"tasks": items[start : start + 100]})
        assert r.status_code == 200, r.text
        for item, res in zip(items[start : start + 100], r.json()["results"], strict=True):
            model.append({**item, "id": res["task"]["id"], "status": "pending", "attempt": 0})
    by_id = {t["id"]: t for t in model}
    # Move a third to running and half of those to completed.
    for grant in await lease(client, n=n // 3):
        task = by_id[grant["task"]["id"]]
        task["status"], task["attempt"] = "running", 1
        if rng.random() < 0.5:
            r = await client.post(f"/leases/{grant['lease_id']}/complete", json={})
            assert r.status_code == 200
            task["status"] = "completed"
    return model


@pytest.fixture
async def model(client: httpx.AsyncClient) -> Model:
    return await _seed(client)


async def _all_pages(client: httpx.AsyncClient, params: list[tuple[str, str]]) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page_params = [*params, ("limit", "17")] + ([("cursor", cursor)] if cursor else [])
        r = await client.get("/tasks", params=page_params)
        assert r.status_code == 200, r.text
        ids += [t["id"] for t in r.json()["tasks"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return ids


def _matches(task: dict[str, Any], params: list[tuple[str, str]]) -> bool:
    wanted: dict[str, set[str]] = defaultdict(set)
    for k, v in params:
        wanted[k].add(v)
    for k, values in wanted.items():
        if k.startswith("tag."):
            if task["tags"].get(k[4:]) not in values:
                return False
        elif task[k] not in values:  # status, type, group
            return False
    return True


QUERIES = [
    [("tag.profile", "dr")],
    [("tag.profile", "dr"), ("tag.dst", "s3://eu-1")],
    [("tag.dst", "s3://eu-1"), ("tag.dst", "gs://x")],
    [("tag.profile", "a%b"), ("status", "pending"), ("status", "running")],
    [("tag.dir", "ltr"), ("type", "copy"), ("group", "g1")],
    [("tag.profile", "mirror"), ("tag.dir", "rtl"), ("tag.dst", "az://y"), ("tag.dst", "gs://x")],
    [("tag.profile", "nobody")],
    [("tag.unknown", "x")],
]


@pytest.mark.parametrize("params", QUERIES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p))
async def test_tag_queries_match_the_model(
    client: httpx.AsyncClient, model: Model, params: list[tuple[str, str]]
) -> None:
    expected = sorted(t["id"] for t in model if _matches(t, params))
    assert await _all_pages(client, params) == expected


def _aggregate(model: Model, group_by: list[str], params: list[tuple[str, str]]) -> dict[Any, Any]:
    def key_of(task: dict[str, Any]) -> tuple[Any, ...]:
        out = []
        for name in group_by:
            if name.startswith("tag."):
                out.append(task["tags"].get(name[4:]))
            else:
                out.append(task[name])
        return tuple(out)

    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for task in model:
        if _matches(task, params):
            groups[key_of(task)].append(task)
    result = {}
    for key, tasks in groups.items():
        tx = [t["expected_io"]["net_tx_bytes"] for t in tasks]
        pr = [t["priority"] for t in tasks]
        result[key] = {
            "count": len(tasks),
            "sum": {"expected_io.net_tx_bytes": sum(tx)},
            "min": {"priority": min(pr)},
            "max": {"expected_io.net_tx_bytes": max(tx)},
            "avg": {"priority": sum(pr) / len(pr)},
        }
    return result


@pytest.mark.parametrize(
    ("group_by", "params"),
    [
        (["tag.dst"], []),
        (["tag.dst", "status"], []),
        (["tag.dir"], [("status", "pending")]),  # tasks lacking the tag group under null
        (["status", "type", "group"], [("tag.profile", "dr")]),
        ([], [("tag.dst", "s3://eu-1"), ("tag.dst", "s3://eu-2")]),
    ],
)
async def test_aggregates_match_the_model(
    client: httpx.AsyncClient,
    model: Model,
    group_by: list[str],
    params: list[tuple[str, str]],
) -> None:
    query = [("group_by", g) for g in group_by] + params
    query += [
        ("sum", "expected_io.net_tx_bytes"),
        ("min", "priority"),
        ("max", "expected_io.net_tx_bytes"),
        ("avg", "priority"),
    ]
    r = await client.get("/tasks/aggregate", params=query)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["truncated"] is False
    got = {}
    for g in body["groups"]:
        assert list(g["key"]) == group_by
        key = tuple(g["key"][name] for name in group_by)
        got[key] = {f: g[f] for f in ("count", "sum", "min", "max", "avg")}
        got[key]["avg"] = {"priority": pytest.approx(g["avg"]["priority"])}
    expected = _aggregate(model, group_by, params)
    assert got == expected
    counts = [g["count"] for g in body["groups"]]
    assert counts == sorted(counts, reverse=True)


async def test_aggregate_limit_reports_truncation(client: httpx.AsyncClient, model: Model) -> None:
    r = await client.get("/tasks/aggregate", params={"group_by": "tag.dst", "limit": 2})
    body = r.json()
    assert len(body["groups"]) == 2 and body["truncated"] is True
    biggest = Counter(t["tags"]["dst"] for t in model).most_common(1)[0][1]
    assert body["groups"][0]["count"] == biggest


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({}, lambda t: True),
        ({"status": "pending"}, lambda t: t["status"] == "pending"),
        ({"prefix": "s3://eu"}, lambda t: t["tags"]["dst"].startswith("s3://eu")),
    ],
)
async def test_tag_values_count_descending(
    client: httpx.AsyncClient,
    model: Model,
    params: dict[str, str],
    keep: Callable[[dict[str, Any]], bool],
) -> None:
    r = await client.get("/tags/dst/values", params=params)
    assert r.status_code == 200, r.text
    values = r.json()["values"]
    counts = Counter(t["tags"]["dst"] for t in model if keep(t))
    assert {v["value"]: v["count"] for v in values} == dict(counts)
    assert [v["count"] for v in values] == sorted(counts.values(), reverse=True)


async def test_prefixes_are_literal(client: httpx.AsyncClient) -> None:
    # Keys cannot hold '%', values can: both kinds of prefix are checked.
    keys = ["a_b", "axb", "ab", "billing.cost", "billing_cost"]
    r = await client.post(
        "/tasks/batch", json={"tasks": [{"type": "t", "tags": {k: "v" + k for k in keys}}]}
    )
    assert r.status_code == 200
    r2 = await client.post("/tasks", json={"type": "t", "tags": {"p": "a%b", "q": "x"}})
    await client.post("/tasks", json={"type": "t", "tags": {"p": "a_b"}})
    await client.post("/tasks", json={"type": "t", "tags": {"p": "axb"}})
    assert r2.status_code == 201

    async def keys_with(prefix: str) -> list[str]:
        got = await client.get("/tags", params={"prefix": prefix})
        out: list[str] = got.json()["keys"]
        return out

    assert await keys_with("a%") == []
    assert await keys_with("a_") == ["a_b"]
    assert await keys_with("billing.") == ["billing.cost"]
    assert await keys_with("") == sorted([*keys, "p", "q"])
    values = await client.get("/tags/p/values", params={"prefix": "a_"})
    assert values.json()["values"] == [{"value": "a_b", "count": 1}]
    values = await client.get("/tags/p/values", params={"prefix": "a%"})
    assert values.json()["values"] == [{"value": "a%b", "count": 1}]


async def test_bulk_cancel_by_filter(client: httpx.AsyncClient, model: Model) -> None:
    chosen = [t for t in model if t["tags"]["profile"] == "dr" and t["status"] != "completed"]
    r = await client.post("/tasks/cancel", json={"filter": {"tags": {"profile": "dr"}}})
    assert r.status_code == 200, r.text
    leased = sum(1 for t in chosen if t["status"] == "running")
    assert r.json() == {"cancelled": len(chosen) - leased, "cancelling": leased}
    after = await _all_pages(client, [("tag.profile", "dr"), ("status", "cancelled")])
    assert after == sorted(t["id"] for t in chosen if t["status"] == "pending")
    again = await client.post(
        "/tasks/cancel", json={"filter": {"tags": {"profile": ["dr", "mirror"]}, "type": ["copy"]}}
    )
    mirror = [
        t
        for t in model
        if t["tags"]["profile"] == "mirror" and t["type"] == "copy" and t["status"] != "completed"
    ]
    assert sum(again.json().values()) == len(mirror)


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("get", "/tasks", {"tag.bad key": "x"}, "tag.bad key"),
        ("get", "/tasks", {"tag.k": "v" * 257}, "tag.k"),
        ("get", "/tasks/aggregate", {"group_by": "colour"}, "group_by[0]"),
        ("get", "/tasks/aggregate", {"group_by": "tag.a b"}, "group_by[0]"),
        ("get", "/tasks/aggregate", {"sum": "payload"}, "sum[0]"),
        ("get", "/tags/bad key/values", {}, "key"),
        ("post", "/tasks/cancel", {"filter": {}}, "filter"),
    ],
)
async def test_bad_tag_requests_name_the_field(
    client: httpx.AsyncClient, method: str, path: str, payload: dict[str, Any], field: str
) -> None:
    if method == "get":
        r = await client.get(path, params=payload)
    else:
        r = await client.post(path, json=payload)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_tag_query_pages_are_stable_under_concurrent_inserts(
    client: httpx.AsyncClient,
) -> None:
    before = []
    for _ in range(3):
        r = await client.post(
            "/tasks/batch", json={"tasks": [{"type": "t", "tags": {"p": "x"}}] * 50}
        )
        before += [x["task"]["id"] for x in r.json()["results"]]

    async def writer() -> None:
        for _ in range(10):
            more = [{"type": "t", "tags": {"p": "x"}}] * 20
            await client.post("/tasks/batch", json={"tasks": more})

    seen, _ = await asyncio.gather(_all_pages(client, [("tag.p", "x")]), writer())
    assert len(seen) == len(set(seen))
    assert set(before) <= set(seen)
    assert seen == sorted(seen)


async def test_tag_pages_across_the_id_window(client: httpx.AsyncClient) -> None:
    # Listing with tags looks through a window of 2000 tasks in id order before going to
    # the index: matches inside and beyond it must come in order, each exactly once.
    marked = {5, 1999, 2000, 2001, 2400}
    ids = []
    for start in range(0, 2500, 1000):
        batch = [
            {"type": "t", "tags": {"m": "yes"} if i in marked else {}}
            for i in range(start, min(start + 1000, 2500))
        ]
        r = await client.post("/tasks/batch", json={"tasks": batch})
        ids += [x["task"]["id"] for x in r.json()["results"]]
    expected = [ids[i] for i in sorted(marked)]
    assert await _all_pages(client, [("tag.m", "yes")]) == expected
    r = await client.get("/tasks", params={"tag.m": "yes", "limit": 2})
    assert [t["id"] for t in r.json()["tasks"]] == expected[:2]
