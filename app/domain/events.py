"""The event stream (``GET /events``): a safe horizon per replica, a cursor per client.

One :class:`Horizon` per replica probes the database every ``events_poll_seconds`` while
at least one client is connected (see ``app/store/events.py`` for why its horizon is
safe); clients sleep until it moves past their cursor, then read the rows between, in
id order, in bounded batches. A client's memory is one batch; a slow client only slows
its own generator (the server's send waits for the socket), never the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from ..config import Settings
from ..store import events as store
from ..store.db import Database
from .errors import InvalidInput

log = logging.getLogger("taskmill.events")

EventFilter = store.EventFilter

# Pending (writers, last_id) pairs kept while a long transaction runs; beyond this the
# newest two are merged (a later, still safe, horizon).
_MAX_PENDING = 256


class Horizon:
    """The highest event id below which no event can still appear (shared by clients)."""

    def __init__(self, db: Database, interval: float) -> None:
        self.db = db
        self.interval = interval
        self.safe: int | None = None
        self.probes = 0  # probes done (tests wait on it)
        self._last_id: int | None = None
        self._pending: deque[tuple[frozenset[int], int]] = deque()
        self._moved = asyncio.Condition()
        self._clients = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._notifier: asyncio.Future[None] | None = None

    async def step(self) -> None:
        """One probe: pair the previous sequence value with the writers seen now; advance
        to the newest value none of whose writers still runs."""
        async with self.db.transaction() as conn:
            p = await store.probe(conn)
        self.probes += 1
        if self._last_id is not None and (self.safe is None or self._last_id > self.safe):
            self._pending.append((p.writers, self._last_id))
            if len(self._pending) > _MAX_PENDING:
                w2, s2 = self._pending.pop()
                w1, s1 = self._pending.pop()
                self._pending.append((w1 | w2, max(s1, s2)))
        self._last_id = p.last_id
        # An entry whose writers have all ended makes its value safe, and with it every
        # earlier one (its writers include theirs still running at that probe).
        done = None
        for i, (writers, _) in enumerate(self._pending):
            if not writers & p.writers:
                done = i
        safe = self.safe
        if done is not None:
            for _ in range(done + 1):
                _, last_id = self._pending.popleft()
                safe = last_id if safe is None else max(safe, last_id)
        if safe != self.safe:
            async with self._moved:
                self.safe = safe
                self._moved.notify_all()

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away; keep trying
                log.warning("event horizon probe failed: %s", exc)
            await asyncio.sleep(self.interval if self.safe is not None else self.interval / 4)

    @contextlib.asynccontextmanager
    async def subscribed(self) -> AsyncIterator[None]:
        """Keep the probe loop running while inside (it stops with the last client)."""
        self._clients += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="taskmill-event-horizon")
        try:
            yield
        finally:
            self._clients -= 1
            if self._clients == 0 and self._task is not None:
                self._task.cancel()
                self._task = None
                # Probes restart from scratch: no stale pairing with later writers, and a
                # client that comes later and starts "now" must not start at an old horizon.
                self._last_id = None
                self._pending.clear()
                self.safe = None

    async def wait_beyond(self, cursor: int | None, timeout: float) -> int | None:
        """Wait until the horizon is known and above ``cursor``; None after ``timeout``."""

        def moved() -> bool:
            return self._closed or (
                self.safe is not None and (cursor is None or self.safe > cursor)
            )

        async with self._moved:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait_for(moved), timeout)
        if self._closed or not moved():
            return None
        return self.safe

    def end(self) -> None:
        """End every stream soon (shutdown began); callable from sync code in the loop."""
        if not self._closed:
            self._closed = True
            self._notifier = asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        async with self._moved:
            self._moved.notify_all()

    async def close(self) -> None:
        """End every stream and the probe loop (server shutdown)."""
        self._closed = True
        await self._notify()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def closed(self) -> bool:
        """True once the server began shutting down."""
        return self._closed


def event_view(row: Any) -> dict[str, Any]:
    """The JSON of one event (SPEC §11): id, event, at, task_id, type, group, tags + data."""
    body: dict[str, Any] = dict(row["data"] or {})
    body.update(
        id=row["id"],
        event=row["event"],
        at=row["at"].isoformat(),
        task_id=row["task_id"],
        type=row["type"],
        group=row["group_name"],
        tags=row["tags"] or {},
    )
    return body


class EventService:
    """Streams of events for clients, from the persisted outbox."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.horizon = Horizon(db, settings.events_poll_seconds)

    def drain(self) -> None:
        """Shutdown began: end every stream."""
        self.horizon.end()

    async def close(self) -> None:
        """Stop the probe loop."""
        await self.horizon.close()

    @staticmethod
    def parse_last_id(value: str | None) -> int | None:
        """``Last-Event-ID`` (or the ``last_event_id`` parameter): a decimal event id."""
        if value is None or value == "":
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 19:
            raise InvalidInput.at(
                "last_event_id",
                "not an event id",
                "int",
                detail="Last-Event-ID must be an event id this server sent",
            )
        return int(value)

    async def stream(self, flt: EventFilter, last_id: int | None) -> AsyncIterator[dict[str, Any]]:
        """Events after ``last_id`` (None: from now on), forever, in id order."""
        batch = self.settings.events_batch_size
        window = self.settings.events_scan_window
        async with self.horizon.subscribed():
            cursor = last_id
            if cursor is None:
                # From now on: everything not yet safe is still to come.
                cursor = await self.horizon.wait_beyond(None, timeout=3600)
                if cursor is None:
                    return
            while not self.horizon.closed:
                safe = await self.horizon.wait_beyond(cursor, timeout=60)
                if safe is None:
                    continue
                while cursor < safe and not self.horizon.closed:
                    # A bounded slice of ids per query: a filter that matches little
                    # never makes one query scan the whole backlog.
                    upto = min(safe, cursor + window)
                    async with self.db.transaction() as conn:
                        rows = await store.read(conn, flt, cursor, upto, batch)
                    for row in rows:
                        yield event_view(row)
                        cursor = row["id"]
                    if len(rows) < batch:
                        cursor = upto
