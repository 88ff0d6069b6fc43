"""A worker for the CLI's SIGTERM test (run by `taskmill worker` in a subprocess)."""

from __future__ import annotations

import asyncio

from taskmill_sdk import TaskContext, Worker

worker = Worker(concurrency=4, wait_seconds=1, shutdown_timeout=1.0)


@worker.handler("polite")
async def polite(ctx: TaskContext) -> str:
    # Works until the worker is told to stop, then finishes properly.
    while not ctx.stopping:  # noqa: ASYNC110 (a flag, set from the signal handler)
        await asyncio.sleep(0.02)
    return "finished on stop"


@worker.handler("stubborn")
async def stubborn(ctx: TaskContext) -> str:
    # Never finishes: the worker releases it after shutdown_timeout.
    await asyncio.Event().wait()
    return "never"
