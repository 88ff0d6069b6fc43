"""Group commit: concurrent single calls of one use case share one statement and one commit.

A plain submit or a completion is one statement, and most of its cost in PostgreSQL is
per statement and per commit, not per row (parse, bind, the outbox insert, the WAL flush).
So while one such statement is on its way, the calls that arrive meanwhile wait for it to
end and then go together, as one statement of many rows: under load, the batch grows by
itself; an idle service sends each call at once, without a timer and without added
latency. TaskMill's own ``submit()`` coalesces the same way (a leader takes the waiting
calls into a shared transaction).

Every call still gets its own answer, exactly the one it would have got alone: the
``run`` function answers per item (a value or an exception), and a failure of the shared
statement as a whole is not handed to every call but retried call by call, so one bad
item cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the item type, beside R the result type
R = TypeVar("R")

#: Answers for a batch of items, in their order: a result, or the error of that item.
RunMany = Callable[[Sequence[I]], Awaitable[Sequence[R | Exception]]]


class Coalescer(Generic[I, R]):
    """Runs ``run`` over the calls that queued up while earlier batches were in flight.

    ``in_flight`` bounds the statements running at once for this use case: with one, a
    replica sends one statement at a time and the batches are as large as the
    concurrency; more lowers the wait behind a slow statement at the cost of smaller
    batches. ``max_items`` bounds one statement.
    """

    def __init__(self, run: RunMany[I, R], *, in_flight: int = 2, max_items: int = 100) -> None:
        self._run = run
        self._in_flight = in_flight
        self._max_items = max_items
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._running = 0
        self._leaders: set[asyncio.Future[None]] = set()

    async def __call__(self, item: I) -> R:
        """Run ``item`` with whichever calls are waiting too; its own answer."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        # Read the answer even if the caller left meanwhile (no "never retrieved" noise).
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append((item, future))
        if self._running < self._in_flight:
            self._running += 1
            # A leader runs batches until none is left; it is a task of its own, so that
            # this call is answered as soon as its own batch is done.
            leader = asyncio.ensure_future(self._lead())
            self._leaders.add(leader)  # the loop keeps only a weak reference to tasks
            leader.add_done_callback(self._leaders.discard)
        return await asyncio.shield(future)  # a caller leaving does not drop the others

    async def _lead(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_items]
                del self._queue[: self._max_items]
                await self._settle(batch)
        finally:
            self._running -= 1

    async def _settle(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        answers: Sequence[R | Exception]
        try:
            answers = await self._run([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1:
                # The shared statement failed as a whole: each call alone, so each gets
                # its own answer (and only a bad item its error).
                for pair in batch:
                    await self._settle([pair])
                return
            answers = [exc]
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
