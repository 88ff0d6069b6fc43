"""One LISTEN connection per replica that turns NOTIFYs into an in-process wake-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from .common import WORK_CHANNEL
from .db import plain_url

log = logging.getLogger("taskmill.notify")


class WorkListener:
    """Wakes every waiting long poll when any replica commits new leasable work.

    Waiters take the current :class:`asyncio.Event`; a notification sets it and installs
    a fresh one, so each notification wakes exactly the waiters present at that moment.
    If the connection drops it reconnects with backoff; waiters also re-check on a
    timer (``poll_fallback_seconds``), so a lost notification only costs latency.
    """

    def __init__(self, url: str) -> None:
        self._url = plain_url(url)
        self._event = asyncio.Event()
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

    def _on_notify(self, *_: Any) -> None:
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
                await lost.wait()
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
