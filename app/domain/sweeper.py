"""The per-replica maintenance loop: lease expiry, due scheduled tasks, TTLs, retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from ..store import sweeper as store
from ..store.db import Database
from .retention import Retention
from .retry import retry_aborted

log = logging.getLogger("taskmill.sweeper")

_BATCH = 500


class Sweeper:
    """Runs every ``interval`` seconds on every replica; safe to run on many at once."""

    def __init__(self, db: Database, interval: float, retention: Retention | None = None) -> None:
        self.db = db
        self.interval = interval
        self.retention = retention
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self) -> dict[str, int]:
        """One pass; each kind of work in its own short transaction, in small batches."""
        counts = {}
        for name, step in (
            ("expired_leases", store.expire_leases),
            ("promoted", store.promote_scheduled),
            ("expired_ttl", store.expire_ttl),
        ):
            total = 0
            while True:
                n = await self._batch(step)
                total += n
                if n < _BATCH:
                    break
            counts[name] = total
        return counts

    @retry_aborted
    async def _batch(self, step: Callable[[AsyncConnection, int], Awaitable[int]]) -> int:
        # A batch whose triggers release blocked tasks can deadlock with a submit that
        # locks them in the other order; PostgreSQL aborts one, and it is simply re-run.
        async with self.db.transaction() as conn:
            return await step(conn, _BATCH)

    def start(self) -> None:
        """Start the background loop."""
        self._task = asyncio.create_task(self._run(), name="taskmill-sweeper")

    async def stop(self) -> None:
        """Stop the loop (an in-flight pass is cancelled and rolled back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
                if self.retention is not None:
                    await self.retention.maybe_run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep sweeping through database outages
                log.warning("sweep failed: %s", exc)
            await asyncio.sleep(self.interval)
