"""Every event the service emits is in the OpenAPI document, and fits its ``Event`` schema.

One scenario over HTTP makes each lifecycle change once (SPEC §8), the stream is read as a
client reads it, and each event's data is validated against
``#/components/schemas/Event`` of the committed document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import httpx
import jsonschema

from app.schemas.events import EventName
from tests.conftest import Server
from tests.e2e.sse import Stream, follow, wait_for
from tests.e2e.test_events import horizon
from tests.helpers import eventually, lease, submit

DOCUMENT = json.loads((Path(__file__).parents[2] / "openapi" / "openapi.json").read_text())


async def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code < 300, r.text
    body: dict[str, Any] = r.json()
    return body


async def _scenario(c: httpx.AsyncClient) -> None:
    # created, deduplicated, leased, progress, completed
    await submit(c, type="a", dedup_key="a")
    await submit(c, type="a", dedup_key="a")
    (a,) = await lease(c, types=["a"])
    await _ok(
        await c.post(f"/leases/{a['lease_id']}/heartbeat", json={"progress": {"fraction": 1}})
    )
    await _ok(await c.post(f"/leases/{a['lease_id']}/complete", json={"result": 1}))
    # retrying, then due (the sweeper), then failed for good
    await submit(c, type="b", retry={"max_attempts": 2})
    (b,) = await lease(c, types=["b"])
    body = {"error": {"message": "later", "code": 7}, "retry_after_seconds": 0.2}
    await _ok(await c.post(f"/leases/{b['lease_id']}/fail", json=body))
    leased = await eventually(lambda: lease(c, types=["b"]), bool)
    body = {"error": "for good", "retryable": False}
    await _ok(await c.post(f"/leases/{leased[0]['lease_id']}/fail", json=body))
    # released; lease.expired
    await submit(c, type="r")
    (r,) = await lease(c, types=["r"])
    await _ok(await c.post(f"/leases/{r['lease_id']}/release", json={}))
    await lease(c, types=["r"], lease_seconds=0.2)
    # expired (TTL), cancelled
    await submit(c, type="ttl", ttl_seconds=0.2)
    doomed = await submit(c, type="x")
    await _ok(await c.post(f"/tasks/{doomed['id']}/cancel"))
    # cancelling, superseded, unblocked: a supersede of a running holder
    await submit(c, type="s", dedup_key="k")
    (s,) = await lease(c, types=["s"])
    await _ok(
        await c.post("/tasks", json={"type": "s", "dedup_key": "k", "on_duplicate": "supersede"})
    )
    await _ok(await c.post(f"/leases/{s['lease_id']}/cancelled", json={}))
    # waiting, finalizing: a parent with a child
    await submit(c, type="p")
    (p,) = await lease(c, types=["p"])
    child = {"type": "child", "parent_id": p["task"]["id"], "parent_lease_id": p["lease_id"]}
    await _ok(await c.post("/tasks", json=child))
    await _ok(await c.post(f"/leases/{p['lease_id']}/complete", json={}))
    (k,) = await lease(c, types=["child"])
    await _ok(await c.post(f"/leases/{k['lease_id']}/complete", json={}))
    # group.paused, group.resumed
    await _ok(await c.put("/groups/g", json={"paused": True}))
    await _ok(await c.put("/groups/g", json={"paused": False}))


def _names(stream: Stream) -> set[str]:
    return {e["event"] for e in stream.events}


async def test_every_emitted_event_fits_the_documented_schema(server: Server) -> None:
    every = set(get_args(EventName))
    documented = DOCUMENT["components"]["schemas"]["Event"]["properties"]["event"]["enum"]
    assert set(documented) == every
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/Event", "components": DOCUMENT["components"]},
        format_checker=jsonschema.FormatChecker(),
    )
    probes = horizon(server).probes
    async with follow(server.url) as stream:
        # The stream starts "now": wait until its reader is in before making changes.
        await eventually(lambda: _probe_count(server), lambda n: n >= probes + 2)
        await _scenario(server.client)
        await wait_for(stream, lambda s: _names(s) == every, timeout=30)
    for event in stream.events:
        errors = [e.message for e in validator.iter_errors(event)]
        assert not errors, (event, errors)


async def _probe_count(server: Server) -> int:
    return int(horizon(server).probes)
