"""Timed runs of concurrent loops: throughput over a measured window, and latencies."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed, as uvicorn's default loop does.

    The HTTP server runs on uvloop; the direct figures would otherwise carry the slower
    stock event loop and flatter the HTTP/direct ratio.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


class QueueDrained(Exception):
    """A loop found no work left: the measurement ends early (its rate stays valid)."""


@dataclass
class Meter:
    """Counts what the loops finish inside the measured window.

    The window opens after a warm-up (pool connections opened, statements prepared,
    caches filled) and closes ``seconds`` later, or early when the queue runs dry; work
    finishing outside it is not counted.
    """

    opens_at: float
    closes_at: float
    tasks: int = 0
    requests: int = 0
    latencies: list[float] = field(default_factory=list)
    drained_at: float | None = None
    #: Set when the queue runs dry, so a :class:`Window` closes then rather than on time.
    dry: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ends_at(self) -> float:
        """When the window closes (or closed)."""
        return self.closes_at if self.drained_at is None else min(self.drained_at, self.closes_at)

    def counting(self) -> bool:
        """True while inside the window."""
        return self.opens_at <= time.perf_counter() < self.ends_at

    def running(self) -> bool:
        """True until the window closes."""
        return time.perf_counter() < self.ends_at

    def drained(self) -> None:
        """A loop found the queue empty: close the window now."""
        if self.drained_at is None:
            self.drained_at = time.perf_counter()
            self.dry.set()

    def add(self, tasks: int) -> None:
        """Count ``tasks`` finished just now."""
        if self.counting():
            self.tasks += tasks

    def request(self, n: int = 1) -> None:
        """Count ``n`` requests (HTTP requests, library calls) answered just now."""
        if self.counting():
            self.requests += n

    def latency(self, seconds: float) -> None:
        """Record one call's latency (finished just now)."""
        if self.counting():
            self.latencies.append(seconds)


#: One iteration of a loop; it reports its work to the meter.
Step = Callable[[Meter], Awaitable[None]]


class Window(Protocol):
    """Told when the measured window opens and closes (e.g. to read CPU counters)."""

    def opened(self) -> None:
        """The window opened just now."""

    def closed(self) -> None:
        """The window closed just now."""


@dataclass(frozen=True)
class Result:
    """One measurement."""

    tasks: int
    seconds: float
    drained: bool
    latencies: tuple[float, ...] = ()
    #: Requests counted by the loops (0 where a scenario does not count them).
    requests: int = 0

    @property
    def rate(self) -> float:
        """Tasks per second over the window."""
        return self.tasks / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: int) -> float:
        """The ``p``-th percentile latency in seconds (NaN without samples)."""
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1]


def first_run_seconds(seconds: float) -> float:
    """Length of the untimed run before the first measurement: up to one second.

    Each measurement's own warm-up is short; this longer one before them all opens every
    pooled connection and prepares the statements on each, so the first measurement is
    not taken colder than the rest.
    """
    return min(seconds, 1.0)


def warmup_seconds(seconds: float) -> float:
    """Uncounted lead-in before each window: a fifth of it, at most half a second."""
    return min(0.5, seconds / 5)


def seed_count(per_second: int, seconds: float) -> int:
    """Tasks to seed so a run of ``seconds`` (plus warm-up) consuming ``per_second`` lasts."""
    return int(per_second * (warmup_seconds(seconds) + seconds))


async def measure(
    step: Step, *, concurrency: int, seconds: float, window: Window | None = None
) -> Result:
    """Run ``concurrency`` loops of ``step`` for a warm-up and then ``seconds`` measured."""
    return await measure_loops([step] * concurrency, seconds=seconds, window=window)


async def measure_loops(
    steps: Sequence[Step], *, seconds: float, window: Window | None = None
) -> Result:
    """Run one loop per step, concurrently, for a warm-up and then ``seconds`` measured.

    ``window``, if given, is told when the measured window opens and closes, so what it
    samples covers the same span as the counts.
    """
    start = time.perf_counter()
    opens_at = start + warmup_seconds(seconds)
    meter = Meter(opens_at=opens_at, closes_at=opens_at + seconds)

    async def loop(step: Step) -> None:
        while meter.running():
            try:
                await step(meter)
            except QueueDrained:
                meter.drained()

    async def watch(window: Window) -> None:
        await asyncio.sleep(opens_at - time.perf_counter())
        window.opened()
        # Closes on time, or early when a loop finds the queue dry.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(meter.dry.wait(), meter.closes_at - time.perf_counter())
        window.closed()

    async with asyncio.TaskGroup() as group:
        if window is not None:
            group.create_task(watch(window))
        for step in steps:
            group.create_task(loop(step))
    if meter.ends_at <= opens_at:
        raise RuntimeError("the queue ran dry during the warm-up: seed more tasks")
    return Result(
        tasks=meter.tasks,
        seconds=meter.ends_at - opens_at,
        drained=meter.ends_at < meter.closes_at,
        latencies=tuple(meter.latencies),
        requests=meter.requests,
    )
