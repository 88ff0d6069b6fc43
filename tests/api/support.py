"""Checks shared by the submit, error, listing and robustness tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import httpx

PROBLEM_JSON = "application/problem+json"


def parse_ts(value: str) -> datetime:
    """An RFC 3339 timestamp from the wire (``Z`` or an explicit offset)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def table_counts(db_url: str) -> tuple[int, int]:
    """(tasks, events) rows in the test database: a failed request must add none."""
    conn = await asyncpg.connect(db_url)
    try:
        tasks = await conn.fetchval("SELECT count(*) FROM tasks")
        events = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await conn.close()
    return int(tasks), int(events)


def problem_violations(r: httpx.Response, status: int | None = None) -> list[str]:
    """What is wrong with ``r`` as an RFC 9457 problem answer (empty when nothing is)."""
    wrong = []
    if status is not None and r.status_code != status:
        wrong.append(f"status {r.status_code}, expected {status}")
    if not r.headers.get("content-type", "").startswith(PROBLEM_JSON):
        wrong.append(f"content-type {r.headers.get('content-type')!r}")
    try:
        body = r.json()
    except ValueError:
        return [*wrong, f"body is not JSON: {r.text[:200]!r}"]
    if not isinstance(body, dict):
        return [*wrong, f"body is not an object: {body!r}"]
    for key, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
        if not isinstance(body.get(key), kind):
            wrong.append(f"{key} missing or not {kind.__name__}: {body.get(key)!r}")
    if body.get("status") != r.status_code:
        wrong.append(f"body status {body.get('status')!r} != {r.status_code}")
    if "Traceback" in r.text:
        wrong.append("body holds a stack trace")
    return wrong


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """``r`` is a problem+json answer with this status; return its body."""
    wrong = problem_violations(r, status)
    assert not wrong, f"{wrong}: {r.text[:500]}"
    body: dict[str, Any] = r.json()
    if status == 422:
        errors = body.get("errors")
        assert isinstance(errors, list) and errors, body
        for error in errors:
            assert isinstance(error.get("field"), str) and error["field"], body
            assert isinstance(error.get("message"), str), body
    return body


def error_fields(r: httpx.Response) -> list[str]:
    """The ``errors[].field`` of a 422 answer."""
    return [e["field"] for e in assert_problem(r, 422)["errors"]]
