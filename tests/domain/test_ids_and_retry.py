"""Domain helpers: ids and lease ids, and re-running aborted use cases."""

from __future__ import annotations

import pytest

from app.domain.ids import TASK_ID_RE, lease_id, new_task_id, parse_lease_id
from app.domain.retry import ATTEMPTS, retry_aborted
from app.store.errors import Retryable


def test_task_ids_are_ulids_strictly_increasing_within_a_process() -> None:
    ids = [new_task_id() for _ in range(5000)]
    assert all(TASK_ID_RE.match(i) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_lease_ids_round_trip_and_reject_near_misses() -> None:
    task = new_task_id()
    token = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    lid = lease_id(task, token)
    assert parse_lease_id(lid) == (task, token)
    for bad in (lid + "\n", lid.upper(), task, lid[:-1], "x" + lid, lid.replace(".", "-")):
        assert parse_lease_id(bad) is None, bad


async def test_an_aborted_use_case_runs_again_until_it_succeeds() -> None:
    calls = 0

    @retry_aborted
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Retryable("deadlock detected")
        return "done"

    assert await flaky() == "done"
    assert calls == 3


async def test_retries_are_bounded_and_other_errors_pass_through() -> None:
    calls = 0

    @retry_aborted
    async def always_aborted() -> None:
        nonlocal calls
        calls += 1
        raise Retryable("deadlock detected")

    with pytest.raises(Retryable):
        await always_aborted()
    assert calls == ATTEMPTS

    @retry_aborted
    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not a database abort")

    calls = 0
    with pytest.raises(ValueError):
        await broken()
    assert calls == 1
