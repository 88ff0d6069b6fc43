"""A hostile-input sweep over every route of the OpenAPI document.

Each operation gets wrong JSON types, numbers JSON cannot hold (1e400, NaN), numbers no
column can hold (2**70), empty and huge strings, NUL bytes, lone surrogates, arrays where
objects belong, in its body, its query and its path. Whatever arrives, the answer is
never a 5xx, and every 4xx is an RFC 9457 problem.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from tests.api.support import problem_violations
from tests.helpers import get_task, lease, submit

HOSTILE = "__HOSTILE__"
LEASE = "__LEASE__"

# JSON fragments, spliced into otherwise valid bodies in place of one field.
HOSTILE_JSON = [
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    str(2**70),
    str(-(2**70)),
    str(2**63),
    "1" * 5000,
    '""',
    '"1e400"',
    '"\\u0000"',
    '"x\\u0000y"',
    '"\\ud800"',
    '"' + "a" * 20_000 + '"',
    "[]",
    "[null]",
    "[1e400]",
    '["\\u0000"]',
    "{}",
    '{"\\u0000": 1}',
    '{"a": "\\u0000"}',
    '{"a": {"b": NaN}}',
    '{"\\ud800": 1}',
    "[" * 100 + "]" * 100,
]

# Whole bodies that are not what any route expects.
HOSTILE_BODIES = [
    b"",
    b"null",
    b"[]",
    b'"x"',
    b"5",
    b"1e400",
    b"{",
    b'{"a": 1}',
    b"\xff\xfe\x00",
    b'{"\\u0000": "\\u0000"}',
    b"[" * 100_000 + b"]" * 100_000,
]

# Raw, already percent-encoded query values.
HOSTILE_QUERY = [
    "",
    "%00",
    "x%00y",
    "%ff",
    "%ED%A0%80",
    "%0A",
    "1e400",
    str(2**70),
    "-1",
    "0",
    "NaN",
    "true",
    "%5B%5D",
    "%7B%7D",
    "A" * 3000,
]

# Raw, already percent-encoded path segments.
HOSTILE_PATH = [
    "x",
    "%00",
    "a%00b",
    "%ff",
    "%ED%A0%80",
    "%0A",
    "%20",
    "A" * 3000,
    "0" * 26,
    "0" * 26 + "." + "0" * 32,
    "0" * 26 + "." + "0" * 32 + "%0A",
    "null",
    "-1",
]

# A valid body per operation, so that one hostile field reaches as deep as it can.
BASE_BODIES: dict[str, Any] = {
    "submit_task": {"type": "sweep"},
    "submit_tasks_batch": {"tasks": [{"type": "sweep"}]},
    "lease_tasks": {"worker_id": "sweeper", "types": ["sweep-lease"]},
    "fail_lease": {"error": "e"},
    "update_lease_state": {"state": {}},
    "complete_leases_batch": {"items": [{"lease_id": LEASE}]},
    "put_group": {},
}


@dataclass
class Call:
    """One request of the sweep."""

    method: str
    path: str
    query: str = ""
    content: bytes | None = None

    def describe(self) -> str:
        body = "" if self.content is None else f" body={self.content[:120]!r}"
        return f"{self.method} {self.path[:120]}{'?' + self.query[:80] if self.query else ''}{body}"


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a $ref (one level) inside the document."""
    ref = schema.get("$ref")
    if not ref:
        return schema
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def object_schemas(spec: dict[str, Any], schema: dict[str, Any]) -> Iterator[tuple[bool, Any]]:
    """(is_array, object schema) for each object shape a property may take."""
    options = [*schema.get("anyOf", []), schema]
    for option in options:
        if "$ref" in option:
            yield False, resolve(spec, option)
        items = option.get("items")
        if isinstance(items, dict) and "$ref" in items:
            yield True, resolve(spec, items)


def splice(base: Any, fragment: str) -> bytes:
    """``base`` as JSON with the HOSTILE placeholder replaced by a raw JSON fragment."""
    text = json.dumps(base)
    assert f'"{HOSTILE}"' in text
    return text.replace(f'"{HOSTILE}"', fragment).encode()


def body_variants(spec: dict[str, Any], op: dict[str, Any]) -> Iterator[bytes]:
    """Hostile bodies for one operation: whole bodies, then one field at a time."""
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return
    yield from HOSTILE_BODIES
    schema = resolve(spec, content["schema"])
    base = BASE_BODIES.get(op["operationId"], {})
    for name, prop in schema.get("properties", {}).items():
        for fragment in HOSTILE_JSON:
            yield splice({**base, name: HOSTILE}, fragment)
        # One level down: each field of a nested object (or of an array's first item).
        for is_array, sub in object_schemas(spec, prop):
            inner = base.get(name)
            inner_base = inner[0] if is_array and inner else inner
            if not isinstance(inner_base, dict):
                inner_base = {}
            for sub_name in sub.get("properties", {}):
                for fragment in HOSTILE_JSON:
                    item = {**inner_base, sub_name: HOSTILE}
                    yield splice({**base, name: [item] if is_array else item}, fragment)


async def test_hostile_input_never_breaks_the_service(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    # Scheduled far ahead: a sweep call may legitimately lease any pending task (a lease
    # request whose `types` is null takes the oldest), and that would change the sentinel.
    sentinel = await submit(
        client,
        type="sentinel",
        payload={"keep": ["me", 1]},
        tags={"k": "v"},
        run_after="2999-01-01T00:00:00Z",
    )
    counter = itertools.count()

    async def fresh_lease() -> str:
        kind = f"sweep-held-{next(counter)}"
        await submit(client, type=kind)
        (grant,) = await lease(client, types=[kind], lease_seconds=600)
        lease_id: str = grant["lease_id"]
        return lease_id

    valid_path = {"task_id": sentinel["id"], "lease_id": LEASE, "name": "sweep-group"}
    calls: list[tuple[str, Call]] = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            streams = any(
                "text/event-stream" in r.get("content", {}) for r in op["responses"].values()
            )
            if streams:
                continue  # an SSE stream never ends on its own; not for this sweep
            params = op.get("parameters", [])
            path_params = [p["name"] for p in params if p["in"] == "path"]
            query_params = [p["name"] for p in params if p["in"] == "query"]
            valid = path
            for name in path_params:
                valid = valid.replace("{" + name + "}", valid_path.get(name, "x"))
            op_id = op["operationId"]
            has_body = "requestBody" in op
            base = json.dumps(BASE_BODIES.get(op_id, {})).encode() if has_body else None
            # Hostile path segments, with a valid body.
            for name in path_params:
                for segment in HOSTILE_PATH:
                    bad = path
                    for other in path_params:
                        value = segment if other == name else valid_path.get(other, "x")
                        bad = bad.replace("{" + other + "}", value)
                    calls.append((op_id, Call(method.upper(), bad, content=base)))
            # Hostile query values, one parameter at a time, and repeated.
            for name in query_params:
                for value in HOSTILE_QUERY:
                    calls.append((op_id, Call(method.upper(), valid, f"{name}={value}")))
                calls.append((op_id, Call(method.upper(), valid, f"{name}=%00&{name}={'B' * 300}")))
            calls.append((op_id, Call(method.upper(), valid, "unknown=%00&" + "x" * 2000)))
            # Hostile bodies.
            for content in body_variants(spec, op):
                calls.append((op_id, Call(method.upper(), valid, content=content)))

    # Cancelling may legitimately end the sentinel task: those calls go last, after the
    # check that the others left it intact.
    destructive = {"cancel_task", "cancel_tasks"}
    calls.sort(key=lambda c: c[0] in destructive)
    visited: set[str] = set()
    failures: list[str] = []
    intact = None
    for op_id, call in calls:
        if op_id in destructive and intact is None:
            intact = await get_task(client, sentinel["id"])
        visited.add(op_id)
        path, content = call.path, call.content
        if LEASE in path or (content is not None and LEASE.encode() in content):
            held = await fresh_lease()
            path = path.replace(LEASE, held)
            if content is not None:
                content = content.replace(LEASE.encode(), held.encode())
        url = path + (f"?{call.query}" if call.query else "")
        headers = {"content-type": "application/json"} if content is not None else {}
        r = await client.request(call.method, url, content=content, headers=headers)
        if r.status_code >= 500:
            failures.append(f"{r.status_code} for {call.describe()}: {r.text[:200]}")
        elif r.status_code >= 400:
            wrong = problem_violations(r)
            if wrong:
                failures.append(f"{wrong} for {call.describe()}: {r.text[:200]}")
        if len(failures) >= 30:
            break
    assert not failures, "\n".join(failures)

    # The sweep really covered the API (and not an empty document).
    expected = {
        "submit_task",
        "submit_tasks_batch",
        "list_tasks",
        "get_task",
        "lease_tasks",
        "complete_lease",
        "fail_lease",
        "heartbeat_lease",
        "put_group",
    }
    assert expected <= visited, expected - visited
    assert len(calls) > 1000
    # The service is still healthy, and the data it held is intact.
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert intact == sentinel


async def test_hostile_headers(client: httpx.AsyncClient) -> None:
    body = b'{"type": "t"}'
    cases: list[dict[str, str]] = [
        {"content-type": "application/json; charset=latin-1"},
        {"content-type": "application/json; charset=utf-16"},
        {"content-type": "application/json", "content-encoding": "gzip"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": ""},
        {"content-type": "application/json", "accept": "text/html"},
        {"content-type": "application/json", "authorization": "Bearer " + "x" * 4000},
    ]
    for headers in cases:
        r = await client.post("/tasks", content=body, headers=headers)
        assert r.status_code < 500, (headers, r.text)
        if r.status_code >= 400:
            assert not problem_violations(r), (headers, r.text)


async def test_query_strings_on_body_routes_are_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/tasks?type=%00&priority=1e400", json={"type": "t"})
    assert r.status_code == 422, r.text
    assert not problem_violations(r)
    assert {e["field"] for e in r.json()["errors"]} <= {"type", "priority"}
    assert (await client.get("/tasks")).json()["tasks"] == []  # nothing was created
    quoted = quote("\x00", safe="")
    r = await client.get(f"/tasks?status=pending&status={quoted}")
    assert r.status_code == 422
    assert not problem_violations(r)
