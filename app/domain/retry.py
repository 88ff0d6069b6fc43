"""Re-running use cases that PostgreSQL aborted.

Cascades lock a tree top-down (a supersede locks the holder, then its descendants) while a
child's completion locks bottom-up (the child, then its parent's counters): under load the
two can deadlock, and PostgreSQL aborts one of them. The aborted transaction changed
nothing, so the whole use case is simply run again.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from ..store.errors import Retryable

P = ParamSpec("P")
T = TypeVar("T")

ATTEMPTS = 5


def retry_aborted(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Run ``fn`` again (up to ATTEMPTS times, with a short random pause) when aborted."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await fn(*args, **kwargs)
            except Retryable:
                if attempt == ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper
