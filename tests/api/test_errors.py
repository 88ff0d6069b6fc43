"""Every client-reachable error of submitting and reading: RFC 9457 problems, nothing
written by a refused request, limits, unknown routes and methods."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api.support import assert_problem, error_fields, table_counts
from tests.conftest import ServerFactory
from tests.helpers import get_task, submit


def nested(depth: int) -> Any:
    """``depth`` objects, one inside the other: {"a": {"a": ... {} }}."""
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# (case id, body, the field the 422 must name)
INVALID_SUBMITS: list[tuple[str, Any, str]] = [
    ("type-missing", {"payload": 1}, "type"),
    ("type-empty", {"type": ""}, "type"),
    ("type-too-long", {"type": "t" * 129}, "type"),
    ("type-space", {"type": "bad type"}, "type"),
    ("type-slash", {"type": "a/b"}, "type"),
    ("type-unicode", {"type": "tâche"}, "type"),
    ("type-newline", {"type": "job\n"}, "type"),
    ("type-nul", {"type": "job\x00"}, "type"),
    ("type-number", {"type": 5}, "type"),
    ("type-null", {"type": None}, "type"),
    ("priority-negative", {"type": "t", "priority": -1}, "priority"),
    ("priority-256", {"type": "t", "priority": 256}, "priority"),
    ("priority-huge", {"type": "t", "priority": 2**70}, "priority"),
    ("priority-fraction", {"type": "t", "priority": 1.5}, "priority"),
    ("priority-word", {"type": "t", "priority": "high"}, "priority"),
    ("dedup-too-long", {"type": "t", "dedup_key": "k" * 513}, "dedup_key"),
    ("dedup-empty", {"type": "t", "dedup_key": ""}, "dedup_key"),
    ("dedup-number", {"type": "t", "dedup_key": 7}, "dedup_key"),
    ("dedup-nul", {"type": "t", "dedup_key": "a\x00b"}, "dedup_key"),
    ("on-duplicate-unknown", {"type": "t", "on_duplicate": "ignore"}, "on_duplicate"),
    ("on-duplicate-case", {"type": "t", "on_duplicate": "SKIP"}, "on_duplicate"),
    ("group-empty", {"type": "t", "group": ""}, "group"),
    ("group-nul", {"type": "t", "group": "g\x00"}, "group"),
    ("tags-33", {"type": "t", "tags": {f"k{i}": "v" for i in range(33)}}, "tags"),
    ("tags-key-space", {"type": "t", "tags": {"bad key": "v"}}, "tags"),
    ("tags-key-empty", {"type": "t", "tags": {"": "v"}}, "tags"),
    ("tags-key-newline", {"type": "t", "tags": {"key\n": "v"}}, "tags"),
    ("tags-key-65", {"type": "t", "tags": {"k" * 65: "v"}}, "tags"),
    ("tags-value-257", {"type": "t", "tags": {"k": "v" * 257}}, "tags"),
    ("tags-reserved", {"type": "t", "tags": {"taskmill.owner": "me"}}, "tags"),
    ("tags-value-nul", {"type": "t", "tags": {"k": "v\x00"}}, "tags"),
    ("tags-value-number", {"type": "t", "tags": {"k": 1}}, "tags.k"),
    ("tags-list", {"type": "t", "tags": [["k", "v"]]}, "tags"),
    ("io-negative", {"type": "t", "expected_io": {"read_bytes": -1}}, "expected_io.read_bytes"),
    ("io-huge", {"type": "t", "expected_io": {"net_tx_bytes": 2**63}}, "expected_io.net_tx_bytes"),
    ("io-unknown", {"type": "t", "expected_io": {"disk_bytes": 1}}, "expected_io.disk_bytes"),
    ("io-string", {"type": "t", "expected_io": {"write_bytes": "many"}}, "expected_io.write_bytes"),
    ("retry-attempts-0", {"type": "t", "retry": {"max_attempts": 0}}, "retry.max_attempts"),
    ("retry-attempts-1001", {"type": "t", "retry": {"max_attempts": 1001}}, "retry.max_attempts"),
    ("retry-backoff", {"type": "t", "retry": {"backoff": "linear"}}, "retry.backoff"),
    ("retry-base-negative", {"type": "t", "retry": {"base_seconds": -1}}, "retry.base_seconds"),
    ("retry-base-huge", {"type": "t", "retry": {"base_seconds": 86401}}, "retry.base_seconds"),
    ("retry-max-huge", {"type": "t", "retry": {"max_seconds": 7 * 86400 + 1}}, "retry.max_seconds"),
    (
        "retry-max-below-base",
        {"type": "t", "retry": {"base_seconds": 10, "max_seconds": 1}},
        "retry",
    ),
    ("retry-unknown", {"type": "t", "retry": {"jitter": True}}, "retry.jitter"),
    ("run-after-naive", {"type": "t", "run_after": "2030-01-01T00:00:00"}, "run_after"),
    ("run-after-garbage", {"type": "t", "run_after": "tomorrow"}, "run_after"),
    ("run-after-date-only", {"type": "t", "run_after": "2030-01-01"}, "run_after"),
    (
        "run-after-before-year-1",
        {"type": "t", "run_after": "0001-01-01T00:00:00+14:00"},
        "run_after",
    ),
    ("run-after-after-9999", {"type": "t", "run_after": "9999-12-31T23:59:59-14:00"}, "run_after"),
    ("ttl-zero", {"type": "t", "ttl_seconds": 0}, "ttl_seconds"),
    ("ttl-negative", {"type": "t", "ttl_seconds": -5}, "ttl_seconds"),
    ("ttl-over-a-year", {"type": "t", "ttl_seconds": 365 * 86400 + 1}, "ttl_seconds"),
    ("label-too-long", {"type": "t", "label": "l" * 1025}, "label"),
    ("label-nul", {"type": "t", "label": "a\x00"}, "label"),
    ("unknown-field", {"type": "t", "colour": "red"}, "colour"),
    ("server-field", {"type": "t", "status": "completed"}, "status"),
    ("payload-nul-value", {"type": "t", "payload": {"a": ["ok", "x\x00y"]}}, "payload"),
    ("payload-nul-key", {"type": "t", "payload": {"k\x00": 1}}, "payload"),
    ("payload-nul-string", {"type": "t", "payload": "\x00"}, "payload"),
    ("payload-too-deep", {"type": "t", "payload": nested(65)}, "payload"),
    ("payload-far-too-deep", {"type": "t", "payload": nested(500)}, "payload"),
]


@pytest.mark.parametrize(
    ("body", "field"),
    [pytest.param(body, field, id=case) for case, body, field in INVALID_SUBMITS],
)
async def test_invalid_submit_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db_url: str, body: Any, field: str
) -> None:
    r = await client.post("/tasks", json=body)
    problem = assert_problem(r, 422)
    assert problem["type"] == "urn:taskmill:problem:validation-error"
    assert field in [e["field"] for e in problem["errors"]], problem
    assert field in problem["detail"]
    assert "Traceback" not in r.text
    # The same item inside a batch is named by its index.
    items = [{"type": "fine"}, body] if isinstance(body, dict) else [body]
    r = await client.post("/tasks/batch", json={"tasks": items})
    fields = error_fields(r)
    index = len(items) - 1
    assert f"tasks[{index}].{field}" in fields, fields
    assert await table_counts(db_url) == (0, 0)


# Raw bodies: what a JSON encoder would refuse to produce.
RAW_INVALID: list[tuple[str, bytes, str]] = [
    ("malformed", b'{"type": "t",', "body"),
    ("not-json", b"type=t", "body"),
    ("single-quotes", b"{'type': 't'}", "body"),
    ("trailing-garbage", b'{"type": "t"} x', "body"),
    ("array", b'[{"type": "t"}]', "body"),
    ("string", b'"t"', "body"),
    ("number", b"5", "body"),
    ("null", b"null", "body"),
    ("empty", b"", "body"),
    ("payload-1e400", b'{"type": "t", "payload": 1e400}', "payload"),
    ("payload-neg-1e400", b'{"type": "t", "payload": {"x": [-1e400]}}', "payload"),
    ("payload-nan", b'{"type": "t", "payload": NaN}', "payload"),
    ("payload-infinity", b'{"type": "t", "payload": Infinity}', "payload"),
    ("payload-escaped-nul", b'{"type": "t", "payload": "a\\u0000b"}', "payload"),
    ("payload-escaped-nul-key", b'{"type": "t", "payload": {"\\u0000": 1}}', "payload"),
    ("payload-lone-surrogate", b'{"type": "t", "payload": "\\ud800"}', "payload"),
    ("label-lone-surrogate", b'{"type": "t", "label": "\\udfff"}', "label"),
    ("tag-lone-surrogate", b'{"type": "t", "tags": {"k": "\\ud800"}}', "tags"),
    ("dedup-lone-surrogate", b'{"type": "t", "dedup_key": "\\ud800"}', "dedup_key"),
    ("group-lone-surrogate", b'{"type": "t", "group": "\\ud800"}', "group"),
    ("priority-1e400", b'{"type": "t", "priority": 1e400}', "priority"),
    ("ttl-nan", b'{"type": "t", "ttl_seconds": NaN}', "ttl_seconds"),
    ("ttl-infinity", b'{"type": "t", "ttl_seconds": Infinity}', "ttl_seconds"),
    ("base-nan", b'{"type": "t", "retry": {"base_seconds": NaN}}', "retry.base_seconds"),
]


@pytest.mark.parametrize(
    ("content", "field"),
    [pytest.param(content, field, id=case) for case, content, field in RAW_INVALID],
)
async def test_invalid_raw_submit_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db_url: str, content: bytes, field: str
) -> None:
    r = await client.post("/tasks", content=content, headers={"content-type": "application/json"})
    problem = assert_problem(r, 422)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert await table_counts(db_url) == (0, 0)


async def test_surrogate_pairs_are_fine(client: httpx.AsyncClient) -> None:
    # An escaped surrogate *pair* is one valid character (U+1F389), not a lone surrogate.
    r = await client.post(
        "/tasks",
        content=b'{"type": "t", "payload": "\\ud83c\\udf89", "label": "\\ud83c\\udf89"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["task"]["payload"] == "\U0001f389"
    assert r.json()["task"]["label"] == "\U0001f389"


async def test_json_depth_limit_boundary(client: httpx.AsyncClient) -> None:
    # 64 levels of containers are fine, 65 are not.
    ok: Any = []
    for _ in range(63):
        ok = [ok]
    r = await client.post("/tasks", json={"type": "t", "payload": ok})
    assert r.status_code == 201, r.text
    assert (await get_task(client, r.json()["task"]["id"]))["payload"] == ok
    r = await client.post("/tasks", json={"type": "t", "payload": [ok]})
    assert error_fields(r) == ["payload"]


async def test_undecodable_body_is_refused_cleanly(client: httpx.AsyncClient, db_url: str) -> None:
    # Not UTF-8 inside a string: the JSON text cannot even be decoded.
    for content in (b'{"type": "\xff\xfe"}', b'{"type": "t", "label": "\xc3"}'):
        r = await client.post(
            "/tasks", content=content, headers={"content-type": "application/json"}
        )
        assert r.status_code in (400, 422), r.text
        assert_problem(r, r.status_code)
    assert await table_counts(db_url) == (0, 0)


async def test_absurdly_deep_json_is_refused_cleanly(
    client: httpx.AsyncClient, db_url: str
) -> None:
    # Deeper than the JSON parser itself will go: still a clean client error.
    depth = 100_000
    content = b'{"type": "t", "payload": ' + b"[" * depth + b"]" * depth + b"}"
    r = await client.post("/tasks", content=content, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert_problem(r, r.status_code)
    assert await table_counts(db_url) == (0, 0)


async def test_non_json_content_type_is_refused(client: httpx.AsyncClient, db_url: str) -> None:
    body = json.dumps({"type": "t"}).encode()
    for headers in ({"content-type": "text/plain"}, {"content-type": "application/xml"}):
        r = await client.post("/tasks", content=body, headers=headers)
        assert error_fields(r) == ["body"]
    assert await table_counts(db_url) == (0, 0)


async def test_validation_names_every_bad_field(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/tasks",
        json={"type": "", "priority": 300, "tags": {"taskmill.x": "y"}, "ttl_seconds": 0},
    )
    fields = set(error_fields(r))
    assert {"type", "priority", "tags", "ttl_seconds"} <= fields


# -- size limits -----------------------------------------------------------------------


async def test_payload_limit_boundary(make_server: ServerFactory, db_url: str) -> None:
    server = await make_server(max_payload_bytes=1000)
    # Encoded compactly, a string of 998 characters is exactly 1000 bytes.
    r = await server.client.post("/tasks", json={"type": "t", "payload": "x" * 998})
    assert r.status_code == 201, r.text
    before = await table_counts(db_url)
    r = await server.client.post("/tasks", json={"type": "t", "payload": "x" * 999})
    problem = assert_problem(r, 413)
    assert problem["type"] == "urn:taskmill:problem:too-large"
    assert [e["field"] for e in problem["errors"]] == ["payload"]
    assert "1000" in problem["detail"]
    # The limit counts UTF-8 bytes, not characters: 500 two-byte characters + quotes.
    r = await server.client.post("/tasks", json={"type": "t", "payload": "é" * 500})
    assert_problem(r, 413)
    assert await table_counts(db_url) == before


async def test_body_limit(make_server: ServerFactory, db_url: str) -> None:
    server = await make_server(max_body_bytes=2000)
    big = json.dumps({"type": "t", "label": "x" * 1000, "payload": "y" * 1500}).encode()
    r = await server.client.post(
        "/tasks", content=big, headers={"content-type": "application/json"}
    )
    problem = assert_problem(r, 413)
    assert problem["type"] == "urn:taskmill:problem:too-large"
    assert "2000" in problem["detail"]

    async def chunks() -> Any:
        # Streamed without Content-Length: the limit must hold while reading.
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    r = await server.client.post(
        "/tasks", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    problem = assert_problem(r, 413)
    assert problem["type"] == "urn:taskmill:problem:too-large"
    assert await table_counts(db_url) == (0, 0)
    # A body under the limit is served, streamed or not.
    small = json.dumps({"type": "t", "payload": "z" * 100}).encode()

    async def small_chunks() -> Any:
        yield small[:10]
        yield small[10:]

    r = await server.client.post(
        "/tasks", content=small_chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 201, r.text


async def test_body_limit_applies_to_batches(make_server: ServerFactory, db_url: str) -> None:
    server = await make_server(max_body_bytes=2000)
    r = await server.client.post("/tasks/batch", json={"tasks": [{"type": "t" * 100}] * 30})
    assert_problem(r, 413)
    assert await table_counts(db_url) == (0, 0)


# -- reading -----------------------------------------------------------------------------


async def test_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    task = await submit(client)
    # Well-formed ids that were never issued.
    other = "0" * 26 if task["id"] != "0" * 26 else "1" * 26
    for task_id in (other, task["id"][:-1] + ("0" if task["id"][-1] != "0" else "1")):
        r = await client.get(f"/tasks/{task_id}")
        problem = assert_problem(r, 404)
        assert problem["type"] == "urn:taskmill:problem:not-found"
    assert (await get_task(client, task["id"]))["id"] == task["id"]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("nope", id="word"),
        pytest.param("%00", id="nul"),
        pytest.param("abc%00def", id="embedded-nul"),
        pytest.param("%ff%fe", id="bad-utf8"),
        pytest.param("%ED%A0%80", id="encoded-surrogate"),
        pytest.param("A" * 5000, id="very-long"),
        pytest.param("%20", id="space"),
        pytest.param("..%2F..%2Fetc", id="traversal"),
        pytest.param("'%3B%20DROP%20TABLE%20tasks%3B--", id="sql"),
        pytest.param("01ARZ3NDEKTSV4RRFFQ69G5FA%C3%A9", id="non-ascii"),
    ],
)
async def test_malformed_task_id_is_404(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(f"/tasks/{path}")
    assert_problem(r, 404)
    # The store is untouched and still answers.
    assert (await client.get("/tasks")).status_code == 200


async def test_real_id_with_trailing_junk_is_404(client: httpx.AsyncClient) -> None:
    task = await submit(client)
    for suffix in ("%0A", "%0D%0A", "%00", "%20", "%09", "x"):
        r = await client.get(f"/tasks/{task['id']}{suffix}")
        assert r.status_code == 404, (suffix, r.text)
        assert_problem(r, 404)
    r = await client.get(f"/tasks/{task['id'].lower()}")
    assert_problem(r, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/"),
        ("POST", "/task"),
        ("GET", "/tasks/batch/extra"),
        ("GET", "/%00"),
        ("POST", "/leases/x/unknown-action"),
    ],
)
async def test_unknown_route_is_404_problem(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await client.request(method, path, json={})
    problem = assert_problem(r, 404)
    assert problem["type"] == "urn:taskmill:problem:not-found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/tasks"),
        ("PUT", "/tasks"),
        ("PATCH", "/tasks/batch"),
        ("POST", "/healthz"),
        ("DELETE", "/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV"),
    ],
)
async def test_wrong_method_is_405_problem(
    client: httpx.AsyncClient, db_url: str, method: str, path: str
) -> None:
    r = await client.request(method, path, json={"type": "t"})
    problem = assert_problem(r, 405)
    assert problem["type"] == "urn:taskmill:problem:method-not-allowed"
    # The Allow header survives the problem rendering (Starlette names the methods of the
    # first route matching the path, so only check it is there and excludes this one).
    allow = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
    assert allow, r.headers
    assert method not in allow
    assert await table_counts(db_url) == (0, 0)


async def test_errors_never_leak_internals(client: httpx.AsyncClient) -> None:
    r = await client.post("/tasks", content=b"{", headers={"content-type": "application/json"})
    text = r.text.lower()
    for leak in ("traceback", "sqlalchemy", "asyncpg", 'file "', "site-packages"):
        assert leak not in text, r.text
