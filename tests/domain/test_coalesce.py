"""Group commit (app/domain/coalesce.py): batches form under load, answers stay per call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from app.domain.coalesce import Coalescer


class Recorder:
    """A run function that records its batches and can be held, or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.poison: set[int] = set()

    async def run(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        await self.gate.wait()
        if len(items) > 1 and self.poison & set(items):
            raise RuntimeError("the shared statement failed")
        return [ValueError(i) if i < 0 else i * 10 for i in items]


async def test_an_idle_coalescer_runs_each_call_at_once() -> None:
    rec = Recorder()
    coalesce: Coalescer[int, int] = Coalescer(rec.run, in_flight=1)
    assert await coalesce(1) == 10
    assert await coalesce(2) == 20
    assert rec.batches == [[1], [2]]


async def test_calls_arriving_while_a_batch_is_in_flight_share_the_next_one() -> None:
    rec = Recorder()
    rec.gate.clear()
    coalesce: Coalescer[int, int] = Coalescer(rec.run, in_flight=1, max_items=3)
    first = asyncio.ensure_future(coalesce(0))
    await asyncio.sleep(0)  # the leader has taken [0] and waits at the gate
    rest = [asyncio.ensure_future(coalesce(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [10, 20, 30, 40, 50]
    assert rec.batches == [[0], [1, 2, 3], [4, 5]]  # in order, bounded by max_items


async def test_each_call_gets_its_own_error_and_a_failed_batch_is_retried_call_by_call() -> None:
    rec = Recorder()
    rec.gate.clear()
    rec.poison = {7}
    coalesce: Coalescer[int, int] = Coalescer(rec.run, in_flight=1)
    first = asyncio.ensure_future(coalesce(1))
    await asyncio.sleep(0)
    calls = [asyncio.ensure_future(coalesce(i)) for i in (2, -3, 7)]
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == 10
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert answers[0] == 20 and answers[2] == 70
    assert isinstance(answers[1], ValueError)  # only the bad item's own error
    assert rec.batches == [[1], [2, -3, 7], [2], [-3], [7]]


async def test_a_caller_that_leaves_does_not_drop_the_others() -> None:
    rec = Recorder()
    rec.gate.clear()
    coalesce: Coalescer[int, int] = Coalescer(rec.run, in_flight=1)
    first = asyncio.ensure_future(coalesce(1))
    await asyncio.sleep(0)
    leaving, staying = asyncio.ensure_future(coalesce(2)), asyncio.ensure_future(coalesce(3))
    await asyncio.sleep(0)
    leaving.cancel()
    rec.gate.set()
    assert await first == 10 and await staying == 30
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert rec.batches == [[1], [2, 3]]
