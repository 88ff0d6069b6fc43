"""PgQueuer as the library baseline, driven in the bench process through its own API.

What is measured (all against PgQueuer's own schema, installed by ``Queries.install()``
in a scratch database, durable as by default, with the server's default settings):

* single enqueue: ``concurrency`` loops, each calling ``Queries.enqueue`` with one job
  at a time; one call is one statement (the job and its ``queued`` log row) and one
  commit. Counted: jobs enqueued.
* drain: the queue is seeded first with jobs as ``enqueue`` writes them (the job and its
  log row, in one bulk statement, then ``VACUUM ANALYZE``); then :data:`CONSUMERS` loops,
  each with a queue-manager id of its own, call ``Queries.dequeue`` for ``batch`` jobs
  and ``Queries.log_jobs`` to mark them all ``successful`` (which deletes them from the
  queue and logs them): the two statements a ``QueueManager`` with that ``batch_size``
  issues per batch of a no-op entrypoint. The ``QueueManager`` itself (its per-job
  tasks, heartbeat and status buffers, LISTEN) is left out, so this is PgQueuer's
  database work and client calls at their cheapest, a bar for taskmill rather than a
  worker framework's figure. Counted: jobs completed; enqueueing is not in the window.

The library runs in this process, so its CPU (``server`` in the figures) is the bench
process's: the library, asyncpg and the bench's own loops.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib import metadata

import asyncpg
from pgqueuer import Queries
from pgqueuer.queries import EntrypointExecutionParameter
from pgqueuer.types import QueueEntrypoint, QueueManagerId

from .cpu import CpuWindow, Sample
from .measure import Meter, QueueDrained, Step, measure, measure_loops, seed_count
from .scratch import admin_connection

#: The installed release, for the tables.
VERSION = metadata.version("pgqueuer")
#: The entrypoint (job type) of every job.
ENTRYPOINT = "bench"
#: The same payload as taskmill's bench tasks.
PAYLOAD = b'{"n": 1}'
#: Consumers of the drain scenarios (the issue's figure).
CONSUMERS = 5
#: Jobs to seed per second of a drain, by batch: about twice what 5 consumers reached on
#: the 2-core development machine (6,000 and 15,000 jobs/s), so the queue lasts the run
#: without seeding taking longer than the run itself.
SEED_PER_SECOND = {10: 15_000, 100: 40_000}
#: A QueueManager's default: a picked job's heartbeat older than this is re-picked.
HEARTBEAT_TIMEOUT = timedelta(seconds=30)

_ENTRYPOINTS = {QueueEntrypoint(ENTRYPOINT): EntrypointExecutionParameter(concurrency_limit=0)}


class PgQueuerBaseline:
    """PgQueuer's queries over a pool, and an admin connection to seed and reset."""

    def __init__(self, queries: Queries, admin: asyncpg.Connection) -> None:
        self.queries = queries
        self._admin = admin
        settings = queries.qbe.settings
        self._queue = settings.queue_table
        self._log = settings.queue_table_log

    async def reset(self) -> None:
        """Empty the queue and its log, so every measurement starts alike."""
        await self.queries.clear_queue()
        await self.queries.clear_queue_log()

    async def seed(self, n: int) -> None:
        """Add ``n`` queued jobs as ``enqueue`` writes them, then refresh statistics."""
        await self._admin.execute(
            f"""
            WITH jobs AS (
                INSERT INTO {self._queue} (priority, entrypoint, payload, execute_after, status)
                SELECT 0, $2, $3, now(), 'queued' FROM generate_series(1, $1)
                RETURNING id, entrypoint, priority
            )
            INSERT INTO {self._log} (job_id, status, entrypoint, priority)
            SELECT id, 'queued', entrypoint, priority FROM jobs
            """,
            n,
            ENTRYPOINT,
            PAYLOAD,
        )
        await self._admin.execute(f"VACUUM ANALYZE {self._queue}")

    def enqueue_one(self) -> Step:
        """Enqueue one job per call."""

        async def run(meter: Meter) -> None:
            await self.queries.enqueue(ENTRYPOINT, PAYLOAD)
            meter.request()
            meter.add(1)

        return run

    def consume(self, batch: int) -> Step:
        """Dequeue up to ``batch`` jobs and log them all successful, as one consumer."""
        manager = QueueManagerId(uuid.uuid4())

        async def run(meter: Meter) -> None:
            jobs = await self.queries.dequeue(
                batch_size=batch,
                entrypoints=_ENTRYPOINTS,
                queue_manager_id=manager,
                global_concurrency_limit=None,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
            )
            meter.request()
            if not jobs:
                raise QueueDrained
            await self.queries.log_jobs([(job, "successful", None) for job in jobs])
            meter.request()
            meter.add(len(jobs))

        return run

    async def single_enqueue(
        self, *, concurrency: int, seconds: float, window: CpuWindow
    ) -> Sample:
        """Single enqueues from ``concurrency`` loops."""
        await self.reset()
        result = await measure(
            self.enqueue_one(), concurrency=concurrency, seconds=seconds, window=window
        )
        return Sample(result.rate, result.tasks, result.requests, window.use, result.drained)

    async def drain(self, batch: int, *, seconds: float, window: CpuWindow) -> Sample:
        """:data:`CONSUMERS` consumers of ``batch`` jobs draining a seeded queue."""
        await self.reset()
        await self.seed(seed_count(SEED_PER_SECOND[batch], seconds))
        steps = [self.consume(batch) for _ in range(CONSUMERS)]
        result = await measure_loops(steps, seconds=seconds, window=window)
        return Sample(result.rate, result.tasks, result.requests, window.use, result.drained)


@asynccontextmanager
async def pgqueuer_baseline(url: str, *, connections: int) -> AsyncIterator[PgQueuerBaseline]:
    """PgQueuer installed in the (empty) database at ``url``, over a pool of ``connections``."""
    async with (
        asyncpg.create_pool(url, min_size=connections, max_size=connections) as pool,
        admin_connection(url) as admin,
    ):
        queries = Queries.from_asyncpg_pool(pool)
        await queries.install()
        yield PgQueuerBaseline(queries, admin)
