"""One LISTEN connection per replica that turns NOTIFYs into an in-process wake-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncpg

from .common import WORK_CHANNEL
from .db import plain_url

log = logging.getLogger("taskmill.notify")

#: The longest an announce waits behind the previous NOTIFY: what a long poll on another
#: replica may wait beyond the commit (this replica's own waiters wake at once).
ANNOUNCE_INTERVAL_SECONDS = 0.005


class WorkListener:
    """Wakes every waiting long poll when any replica commits new leasable work.

    Waiters take the current :class:`asyncio.Event`; a notification sets it and installs
    a fresh one, so each notification wakes exactly the waiters present at that moment.
    If the connection drops it reconnects with backoff; waiters also re-check on a
    timer (``poll_fallback_seconds``), so a lost notification only costs latency.

    The hottest writers (submits) do not NOTIFY in their own transaction: a notifying
    commit takes a cluster-wide lock (the notification queue's), so notifying submits
    commit one at a time and never share a WAL flush. They call :meth:`announce` after
    their commit instead, which wakes this replica's waiters at once and sends one
    NOTIFY for all the announces of the next few milliseconds. A
    replica that dies between a commit and its NOTIFY costs the others' waiters only
    the fallback timer.
    """

    def __init__(self, url: str) -> None:
        self._url = plain_url(url)
        self._event = asyncio.Event()
        self._announce = asyncio.Event()
        # Our own announces come back to us through LISTEN; their waiters already woke.
        self._origin = uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._draining = False
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Start listening in the background; returns once the first LISTEN is active."""
        self._task = asyncio.create_task(self._run(), name="taskmill-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout=10)

    async def stop(self) -> None:
        """Stop listening and wake every waiter."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.wake()

    def drain(self) -> None:
        """The server is shutting down: end every long poll now (they answer empty), keep
        listening while requests in flight finish; :meth:`stop` follows."""
        self._draining = True
        self.wake()

    def wake(self) -> None:
        """Wake all current waiters."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    def announce(self) -> None:
        """Leasable work was just committed here: wake local waiters, tell the replicas."""
        self.wake()
        self._announce.set()

    async def _send_announces(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Send the announces on the listening connection, one NOTIFY at a time."""
        try:
            while True:
                await self._announce.wait()
                self._announce.clear()  # announces from now on go into the next NOTIFY
                await conn.execute("SELECT pg_notify($1, $2)", WORK_CHANNEL, self._origin)
                # At most one NOTIFY per interval: under load, one per submit would cost a
                # round trip and a queue entry each, for waiters that one wake-up serves.
                await asyncio.sleep(ANNOUNCE_INTERVAL_SECONDS)
        except Exception as exc:  # the connection broke: send it once listening again
            log.warning("announce failed: %s", exc)
            self._announce.set()
            lost.set()

    def arm(self) -> asyncio.Event:
        """Take the wake-up to wait on *before* looking for work, so none is missed."""
        return self._event

    @property
    def stopping(self) -> bool:
        """True once :meth:`drain` or :meth:`stop` was called (long polls answer at once)."""
        return self._stopping or self._draining

    @staticmethod
    async def wait(armed: asyncio.Event, timeout: float) -> None:
        """Wait until the armed wake-up fires or ``timeout`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(armed.wait(), timeout=timeout)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload != self._origin:
            self.wake()

    async def _run(self) -> None:
        delay = 0.1
        while not self._stopping:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._url, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(WORK_CHANNEL, self._on_notify)
                self.connected.set()
                delay = 0.1
                # Work may have arrived while we were not listening.
                self.wake()
                sender = asyncio.create_task(self._send_announces(conn, lost))
                try:
                    await lost.wait()
                finally:
                    sender.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any connection failure: retry with backoff
                log.warning("listener connection failed: %s", exc)
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
