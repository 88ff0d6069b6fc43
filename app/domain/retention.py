"""Retention: prune terminal tasks and events older than their windows (SPEC §10)."""

from __future__ import annotations

import asyncio

from ..config import Settings
from ..store import retention as store
from ..store.db import Database


class Retention:
    """Run by every replica's sweeper at most every ``retention_interval_seconds``."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._next_run = 0.0

    async def run_once(self) -> dict[str, int]:
        """Prune everything due, batch after batch (one short transaction each)."""
        s = self.settings
        counts = {"tasks": 0, "events": 0}
        for name, step, age in (
            ("tasks", store.prune_tasks, s.task_retention_seconds),
            ("events", store.prune_events, s.events_retention_seconds),
        ):
            if age <= 0:
                continue
            while True:
                async with self.db.transaction() as conn:
                    n = await step(conn, age, s.retention_batch_size)
                counts[name] += n
                if n < s.retention_batch_size:
                    break
                await asyncio.sleep(0)  # let requests in between batches
        return counts

    async def maybe_run(self) -> dict[str, int] | None:
        """:meth:`run_once` if the interval has passed since the last run."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_run:
            return None
        self._next_run = loop.time() + self.settings.retention_interval_seconds
        return await self.run_once()
