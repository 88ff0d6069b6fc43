"""GET /snapshot and GET /metrics move as the queue does."""

from __future__ import annotations

from typing import Any, get_args

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.schemas.tasks import Status
from tests.conftest import ServerFactory
from tests.helpers import eventually, lease, submit


async def _snapshot(c: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await c.get("/snapshot", params=params)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def counts(**nonzero: int) -> dict[str, int]:
    """Tasks per status as the snapshot gives them: every status, zeros included."""
    return {status: nonzero.get(status, 0) for status in get_args(Status)}


async def test_snapshot_counts_by_status_type_group_and_tag(make_server: ServerFactory) -> None:
    server = await make_server(snapshot_terminal_max_age_seconds=0)
    c = server.client
    io = {"read_bytes": 1, "write_bytes": 2, "net_rx_bytes": 3, "net_tx_bytes": 4}
    for i in range(3):
        await submit(c, type="a", group="g1", tags={"dst": "eu"}, expected_io=io, priority=i)
    await submit(c, type="b", tags={"dst": "us"}, expected_io=io, priority=10)
    await submit(c, type="b", priority=20)
    (first,) = await lease(c, types=["a"])  # the priority-0 "a" task
    (second,) = await lease(c, types=["a"])
    r = await c.post(f"/leases/{second['lease_id']}/complete", json={})
    assert r.status_code == 200

    snap = await _snapshot(c)
    assert snap["statuses"]["pending"] == 3
    assert snap["statuses"]["running"] == 1
    assert snap["statuses"]["completed"] == 1
    assert snap["statuses"]["failed"] == 0  # every status is present
    assert snap["types"] == {
        "a": counts(pending=1, running=1, completed=1),
        "b": counts(pending=2),
    }
    assert snap["groups"] == {"g1": counts(pending=1, running=1, completed=1)}
    assert "tags" not in snap

    tagged = await _snapshot(c, by_tag="dst")
    eu = tagged["tags"]["dst"]["eu"]
    assert eu["statuses"] == counts(pending=1, running=1, completed=1)
    # Σ expected_io of the pending and running tasks only.
    assert eu["expected_io"] == {k: 2 * v for k, v in io.items()}
    assert tagged["tags"]["dst"]["us"] == {"statuses": counts(pending=1), "expected_io": io}
    assert first["task"]["tags"] == {"dst": "eu"}


async def test_terminal_counts_are_reused_live_counts_are_exact(
    make_server: ServerFactory,
) -> None:
    server = await make_server(snapshot_terminal_max_age_seconds=3600)
    c = server.client
    before = await _snapshot(c)
    await submit(c)
    (held,) = await lease(c)
    await c.post(f"/leases/{held['lease_id']}/complete", json={})
    after = await _snapshot(c)
    assert after["statuses"]["completed"] == before["statuses"]["completed"] == 0
    assert after["terminal_counted_at"] == before["terminal_counted_at"]
    await submit(c)
    assert (await _snapshot(c))["statuses"]["pending"] == 1  # live: exact at once


async def test_snapshot_by_tag_must_be_a_tag_key(server: Any) -> None:
    r = await server.client.get("/snapshot", params={"by_tag": "no spaces"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "by_tag"


async def _metrics(c: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(m: dict[Any, float], name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_expected(make_server: ServerFactory) -> None:
    server = await make_server()
    c = server.client
    m0 = await _metrics(c)
    assert _value(m0, "taskmill_submits_total", outcome="created") == 0

    await submit(c, type="m", dedup_key="k1")
    await submit(c, type="m", dedup_key="k1")  # deduplicated
    r = await c.post("/tasks", json={"type": "m", "dedup_key": "k1", "on_duplicate": "reject"})
    assert r.status_code == 409
    await submit(c, type="m", dedup_key="k1", on_duplicate="supersede")
    await submit(c, type="m", retry={"max_attempts": 2})
    await submit(c, type="m", retry={"max_attempts": 1})
    m = await _metrics(c)
    assert _value(m, "taskmill_submits_total", outcome="created") == 3
    assert _value(m, "taskmill_submits_total", outcome="deduplicated") == 1
    assert _value(m, "taskmill_submits_total", outcome="rejected") == 1
    assert _value(m, "taskmill_submits_total", outcome="superseded") == 1
    assert _value(m, "taskmill_supersedes_total") == 1
    assert _value(m, "taskmill_queue_depth", status="pending") == 3

    held = await lease(c, n=3)
    assert len(held) == 3
    by_attempts = {h["task"]["max_attempts"]: h["lease_id"] for h in held}
    await c.post(f"/leases/{by_attempts[3]}/complete", json={"result": 1})
    await c.post(f"/leases/{by_attempts[2]}/fail", json={"error": "x", "retry_after_seconds": 60})
    await c.post(f"/leases/{by_attempts[1]}/fail", json={"error": "y"})
    m = await _metrics(c)
    assert _value(m, "taskmill_leases_total", phase="execute") == 3
    assert _value(m, "taskmill_lease_latency_seconds_count") == 3
    assert _value(m, "taskmill_completions_total") == 1
    assert _value(m, "taskmill_retries_total") == 1
    assert _value(m, "taskmill_failures_total") == 1
    assert _value(m, "taskmill_queue_depth", status="scheduled") == 1
    assert _value(m, "taskmill_queue_depth", status="running") == 0

    # Expirations: a lease that runs out, a TTL that runs out.
    await submit(c, type="short")
    await lease(c, types=["short"], lease_seconds=0.2)
    await submit(c, type="never-leased", ttl_seconds=0.2)
    m = await eventually(
        lambda: _metrics(c),
        lambda m: (
            _value(m, "taskmill_expirations_total", kind="lease") >= 1
            and _value(m, "taskmill_expirations_total", kind="ttl") >= 1
        ),
    )
    # No unbounded labels: no tags, task ids, types or groups.
    allowed = {"outcome", "phase", "kind", "status", "le"}
    assert {k for _, labels in m for k, _ in labels} <= allowed
