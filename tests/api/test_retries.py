"""fail and its retries (SPEC §5, §11): backoff windows, retry_after, permanent failures,
exhausted attempts, and the error shown exactly as the worker gave it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import httpx

from tests.helpers import eventually, get_task, lease, submit

# Timestamps are microseconds; the delay is a float8 turned into an interval.
EPS = 1e-5


def delay_of(task: dict[str, Any]) -> float:
    """Seconds between the fail (the row's updated_at) and the retry's run_after.

    Both are the database's now() of the fail's transaction plus the delay, so this is
    the delay the server chose, independent of any clock in the test.
    """
    run_after = datetime.fromisoformat(task["run_after"])
    failed_at = datetime.fromisoformat(task["updated_at"])
    return (run_after - failed_at).total_seconds()


async def events_of(db_url: str, task_id: str) -> list[str]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT event FROM events WHERE task_id = $1 ORDER BY id", task_id)
    finally:
        await conn.close()
    return [r["event"] for r in rows]


async def fail(
    client: httpx.AsyncClient, lease_id: str, error: Any = "boom", **body: Any
) -> dict[str, Any]:
    r = await client.post(f"/leases/{lease_id}/fail", json={"error": error, **body})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def lease_when_due(client: httpx.AsyncClient, **req: Any) -> dict[str, Any]:
    """Lease the next task once one is leasable (the sweeper promotes due retries)."""

    async def probe() -> list[dict[str, Any]]:
        return await lease(client, **req)

    (grant,) = await eventually(probe, lambda leases: len(leases) == 1)
    return grant


async def test_exponential_backoff_doubles_within_jitter_and_is_capped(
    client: httpx.AsyncClient, db_url: str
) -> None:
    base, cap = 0.2, 0.5
    task = await submit(
        client,
        retry={
            "max_attempts": 4,
            "backoff": "exponential",
            "base_seconds": base,
            "max_seconds": cap,
        },
    )
    for attempt in (1, 2, 3):
        grant = await lease_when_due(client)
        assert grant["task"]["id"] == task["id"]
        assert grant["task"]["attempt"] == attempt
        failed = await fail(client, grant["lease_id"], f"attempt {attempt}")
        assert failed["status"] == "scheduled"
        assert failed["attempt"] == attempt
        assert failed["error"] == f"attempt {attempt}"
        assert failed["lease"] is None
        assert failed["finished_at"] is None
        full = min(cap, base * 2 ** (attempt - 1))
        assert full / 2 - EPS <= delay_of(failed) <= full + EPS, (attempt, delay_of(failed))
    grant = await lease_when_due(client)
    assert grant["task"]["attempt"] == 4
    last = await fail(client, grant["lease_id"], {"message": "out of attempts"})
    assert last["status"] == "failed"
    assert last["attempt"] == 4
    assert last["finished_at"] is not None
    assert last["error"] == {"message": "out of attempts"}
    assert await lease(client) == []
    assert await events_of(db_url, task["id"]) == [
        "task.created",
        "task.leased",
        "task.retrying",
        "task.due",
        "task.leased",
        "task.retrying",
        "task.due",
        "task.leased",
        "task.retrying",
        "task.due",
        "task.leased",
        "task.failed",
    ]


async def test_exponential_backoff_window_and_jitter_over_many_tasks(
    client: httpx.AsyncClient,
) -> None:
    base = 10.0
    r = await client.post(
        "/tasks/batch",
        json={"tasks": [{"type": "j", "retry": {"base_seconds": base}} for _ in range(20)]},
    )
    assert r.status_code == 200, r.text
    delays = []
    for grant in await lease(client, n=20):
        failed = await fail(client, grant["lease_id"])
        assert failed["status"] == "scheduled"
        delays.append(delay_of(failed))
    assert len(delays) == 20
    assert all(base / 2 - EPS <= d <= base + EPS for d in delays), delays
    # Jitter: not all the same, and spread over the window (P(fail) < 1e-13).
    assert len({round(d, 3) for d in delays}) > 1
    assert min(delays) < 0.9 * base
    assert max(delays) > 0.6 * base
    assert await lease(client, n=20) == []


async def test_exponential_backoff_is_capped_by_max_seconds(client: httpx.AsyncClient) -> None:
    task = await submit(client, retry={"max_attempts": 5, "base_seconds": 10, "max_seconds": 12})
    # Two quick retries (retry_after 0) to reach attempt 3: uncapped, that would be 40 s.
    for attempt in (1, 2):
        (grant,) = await lease(client)
        assert grant["task"]["attempt"] == attempt
        quick = await fail(client, grant["lease_id"], retry_after_seconds=0)
        assert quick["status"] == "pending"
        assert abs(delay_of(quick)) <= EPS
    (grant,) = await lease(client)
    assert grant["task"]["attempt"] == 3
    failed = await fail(client, grant["lease_id"])
    assert failed["status"] == "scheduled"
    assert 6 - EPS <= delay_of(failed) <= 12 + EPS
    assert (await get_task(client, task["id"]))["status"] == "scheduled"


async def test_fixed_backoff_does_not_grow(client: httpx.AsyncClient) -> None:
    base = 0.3
    task = await submit(
        client,
        retry={"max_attempts": 3, "backoff": "fixed", "base_seconds": base, "max_seconds": 60},
    )
    for attempt in (1, 2):
        grant = await lease_when_due(client)
        assert (grant["task"]["id"], grant["task"]["attempt"]) == (task["id"], attempt)
        failed = await fail(client, grant["lease_id"])
        assert failed["status"] == "scheduled"
        assert base / 2 - EPS <= delay_of(failed) <= base + EPS, delay_of(failed)
    grant = await lease_when_due(client)
    assert grant["task"]["attempt"] == 3
    assert (await fail(client, grant["lease_id"]))["status"] == "failed"


async def test_retry_after_seconds_is_honoured(client: httpx.AsyncClient, db_url: str) -> None:
    slow = await submit(client, type="slow", retry={"base_seconds": 0.01, "max_attempts": 3})
    (grant,) = await lease(client, types=["slow"])
    failed = await fail(client, grant["lease_id"], "rate limited", retry_after_seconds=7.5)
    assert failed["status"] == "scheduled"
    assert abs(delay_of(failed) - 7.5) <= EPS  # exact: no jitter on the worker's own delay
    assert await lease(client, types=["slow"]) == []

    soon = await submit(client, type="soon", retry={"base_seconds": 3600, "max_seconds": 3600})
    (grant,) = await lease(client, types=["soon"])
    failed = await fail(client, grant["lease_id"], retry_after_seconds=0.3)
    assert failed["status"] == "scheduled"
    assert abs(delay_of(failed) - 0.3) <= EPS
    again = await lease_when_due(client, types=["soon"])
    assert (again["task"]["id"], again["task"]["attempt"]) == (soon["id"], 2)
    assert (await get_task(client, slow["id"]))["status"] == "scheduled"
    assert await events_of(db_url, soon["id"]) == [
        "task.created",
        "task.leased",
        "task.retrying",
        "task.due",
        "task.leased",
    ]


async def test_retry_after_zero_is_leasable_at_once(client: httpx.AsyncClient) -> None:
    task = await submit(client, retry={"base_seconds": 3600, "max_seconds": 3600})
    (grant,) = await lease(client)
    failed = await fail(client, grant["lease_id"], retry_after_seconds=0)
    assert failed["status"] == "pending"
    (again,) = await lease(client)
    assert (again["task"]["id"], again["task"]["attempt"]) == (task["id"], 2)


async def test_not_retryable_fails_at_once(client: httpx.AsyncClient, db_url: str) -> None:
    task = await submit(client, retry={"max_attempts": 10, "base_seconds": 0})
    (grant,) = await lease(client)
    failed = await fail(client, grant["lease_id"], "bad input", retryable=False)
    assert failed["status"] == "failed"
    assert failed["attempt"] == 1
    assert failed["finished_at"] is not None
    assert failed["lease"] is None
    assert failed["error"] == "bad input"
    assert await get_task(client, task["id"]) == failed
    assert await lease(client) == []
    assert await events_of(db_url, task["id"]) == ["task.created", "task.leased", "task.failed"]


async def test_exhausted_attempts_fail(client: httpx.AsyncClient) -> None:
    task = await submit(client, retry={"max_attempts": 2, "base_seconds": 0})
    (grant,) = await lease(client)
    first = await fail(client, grant["lease_id"])
    # base_seconds 0: no delay, leasable at once.
    assert first["status"] == "pending"
    (grant,) = await lease(client)
    assert grant["task"]["attempt"] == 2
    last = await fail(client, grant["lease_id"], "second")
    assert last["status"] == "failed"
    assert last["error"] == "second"
    assert await get_task(client, task["id"]) == last
    assert await lease(client) == []


async def test_max_attempts_one_fails_on_the_first_failure(client: httpx.AsyncClient) -> None:
    await submit(client, retry={"max_attempts": 1})
    (grant,) = await lease(client)
    failed = await fail(client, grant["lease_id"], retryable=True, retry_after_seconds=0)
    assert failed["status"] == "failed"


async def test_error_is_shown_exactly_as_given(client: httpx.AsyncClient) -> None:
    errors: list[Any] = [
        'plain text, with ünïcödé and "quotes"',
        "",
        {"message": "disk full"},
        {
            "message": "upload failed",
            "code": 507,
            "retry": False,
            "details": {"path": "/a/b", "sizes": [1, 2.5, None]},
            "trace": ["f1", "f2"],
        },
    ]
    for error in errors:
        task = await submit(client, retry={"max_attempts": 1})
        (grant,) = await lease(client)
        failed = await fail(client, grant["lease_id"], error, retryable=False)
        assert failed["error"] == error
        assert (await get_task(client, task["id"]))["error"] == error


async def test_error_on_a_retry_is_kept_while_scheduled(client: httpx.AsyncClient) -> None:
    task = await submit(client, retry={"base_seconds": 3600, "max_seconds": 3600})
    (grant,) = await lease(client)
    error = {"message": "timeout", "after_ms": 3000}
    await fail(client, grant["lease_id"], error)
    seen = await get_task(client, task["id"])
    assert (seen["status"], seen["error"]) == ("scheduled", error)


async def test_invalid_fail_bodies_are_422_and_change_nothing(client: httpx.AsyncClient) -> None:
    task = await submit(client)
    (grant,) = await lease(client)
    before = await get_task(client, task["id"])
    lid = grant["lease_id"]
    for body in (
        {},
        {"error": {"code": 1}},
        {"error": 42},
        {"error": "x", "retry_after_seconds": -1},
        {"error": "x", "retryable": "maybe"},
        {"error": "nul \u0000 inside"},
        {"error": {"message": "m", "extra": "nul \u0000"}},
    ):
        r = await client.post(f"/leases/{lid}/fail", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert await get_task(client, task["id"]) == before
