"""The service container: one per app instance, started and stopped with it."""

from __future__ import annotations

from ..config import Settings
from ..store.db import Database
from ..store.migrate import readiness
from ..store.notify import WorkListener
from .events import EventService
from .groups import GroupService
from .leases import LeaseService
from .metrics import Metrics, instrument
from .retention import Retention
from .snapshot import SnapshotService
from .sweeper import Sweeper
from .tags import TagService
from .tasks import TaskService


class Taskmill:
    """Everything one replica runs: pool, NOTIFY listener, sweeper, and the use cases."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.db = Database(
            database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            cancel_grace_seconds=settings.cancel_grace_seconds,
        )
        self.listener = WorkListener(database_url)
        self.sweeper = Sweeper(
            self.db, settings.sweep_interval_seconds, Retention(self.db, settings)
        )
        self.tasks = TaskService(self.db, settings, self.listener)
        self.leases = LeaseService(self.db, settings, self.listener)
        self.groups = GroupService(self.db)
        self.tags = TagService(self.db)
        self.events = EventService(self.db, settings)
        self.snapshots = SnapshotService(self.db, settings)
        self.metrics = Metrics(self.db)
        instrument(self.metrics, tasks=self.tasks, leases=self.leases, sweeper=self.sweeper)

    async def start(self, *, sweep: bool = True) -> None:
        """Connect the listener and start the sweeper."""
        await self.listener.start()
        if sweep:
            self.sweeper.start()

    def drain(self) -> None:
        """Shutdown begins: long polls answer (empty) at once; other requests go on."""
        self.listener.drain()
        self.events.drain()  # event streams end, so connections can close

    async def stop(self) -> None:
        """Stop background work, end long polls, close the pool."""
        await self.sweeper.stop()
        await self.events.close()
        await self.listener.stop()
        await self.db.dispose()

    async def readiness(self) -> tuple[bool, bool]:
        """(database reachable, migrations current)."""
        return await readiness(self.db)
