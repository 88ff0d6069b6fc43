"""Running SDK workers inside a test's event loop, next to real servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from taskmill_sdk import Worker


@contextlib.asynccontextmanager
async def running(*workers: Worker, stop_timeout: float = 30.0) -> AsyncIterator[None]:
    """Run the workers while inside; on exit stop them gracefully and wait for the end."""
    tasks = [asyncio.create_task(w.run_async()) for w in workers]
    try:
        yield
    finally:
        for w in workers:
            w.stop()
        done, pending = await asyncio.wait(tasks, timeout=stop_timeout)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()  # a worker that crashed fails the test
        assert not pending, "a worker did not stop in time"
