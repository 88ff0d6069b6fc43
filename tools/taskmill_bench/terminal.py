"""``taskmill bench --terminal-rows N``: what finished tasks cost the claim path.

taskmill keeps terminal tasks in ``tasks`` and makes every hot index partial on the
live statuses, betting that finished rows then cost claims nothing. This checks the bet:
the claim path (lease one, complete it; directly, no HTTP) runs with N completed rows in
``tasks``, and again with the usual alternative, where ``tasks`` holds no finished rows
because each completion moves its row to a history table that holds the N instead
(see :mod:`taskmill_bench.history`). A run on an empty table is the reference for both.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from rich.table import Table

from .drivers import DirectDriver, direct_container
from .history import CREATE_HISTORY_SQL, HISTORY_TABLE, complete_moving
from .measure import (
    Meter,
    QueueDrained,
    Result,
    Step,
    first_run_seconds,
    measure,
    run_async,
    seed_count,
    warmup_seconds,
)
from .output import DRAINED_NOTE, millis, progress_bar, results_console, throughput
from .scratch import (
    admin_connection,
    create_scratch,
    drop_scratch,
    reset,
    seed_pending,
    seed_terminal,
)

#: Pending tasks seeded per second of run time: well above the cycles/s the loops reach
#: on a 2-core machine, so the queue outlasts the measurement.
SEED_PER_SECOND = 5_000

#: Completes one lease by its id.
Completer = Callable[[str], Awaitable[object]]


@dataclass(frozen=True)
class Layout:
    """Where finished tasks live during one measurement."""

    title: str
    finished_in_tasks: int
    finished_in_history: int
    #: Completions move the row to the history table (else they update it in place).
    moves_finished: bool = False


@dataclass(frozen=True)
class Outcome:
    """One layout's measurement, and how long seeding its finished rows took."""

    layout: Layout
    result: Result
    seed_seconds: float


def cycle(driver: DirectDriver, complete: Completer) -> Step:
    """Lease one task and complete it; the lease call's latency is recorded."""

    async def run(meter: Meter) -> None:
        began = time.perf_counter()
        lease_ids = await driver.lease(1)
        meter.latency(time.perf_counter() - began)
        if not lease_ids:
            raise QueueDrained
        await complete(lease_ids[0])
        meter.add(1)

    return run


async def _measure_layouts(
    database_url: str, layouts: list[Layout], *, seconds: float, concurrency: int
) -> list[Outcome]:
    """Seed each layout's finished rows and pending work, then measure its claim cycles."""
    outcomes = []
    async with direct_container(database_url) as taskmill, admin_connection(database_url) as admin:
        driver = DirectDriver(taskmill)
        with progress_bar() as progress:
            bar = progress.add_task("", total=len(layouts) + 1)
            # Untimed, so that the first layout is not measured colder than the rest.
            progress.update(bar, description="warming up")
            await reset(admin)
            warm = first_run_seconds(seconds)
            await seed_pending(admin, seed_count(SEED_PER_SECOND, warm))
            await measure(cycle(driver, driver.complete_one), concurrency=concurrency, seconds=warm)
            progress.advance(bar)
            for layout in layouts:
                await reset(admin)
                progress.update(bar, description=f"{layout.title}: seeding")
                began = time.perf_counter()
                if layout.finished_in_tasks:
                    await seed_terminal(admin, layout.finished_in_tasks)
                complete: Completer = driver.complete_one
                if layout.moves_finished:
                    await admin.execute(CREATE_HISTORY_SQL)
                    await seed_terminal(admin, layout.finished_in_history, HISTORY_TABLE)
                    await admin.execute(f"VACUUM ANALYZE {HISTORY_TABLE}")
                    complete = partial(complete_moving, taskmill)
                seed_seconds = time.perf_counter() - began
                # Also VACUUM ANALYZEs tasks, terminal rows included, as autovacuum would
                # have long since done in a real deployment.
                await seed_pending(admin, seed_count(SEED_PER_SECOND, seconds))
                progress.update(bar, description=f"{layout.title}: measuring")
                result = await measure(
                    cycle(driver, complete), concurrency=concurrency, seconds=seconds
                )
                outcomes.append(Outcome(layout, result, seed_seconds))
                progress.advance(bar)
    return outcomes


def _table(outcomes: list[Outcome], *, seconds: float, concurrency: int) -> Table:
    seeding = ", ".join(
        f"{o.seed_seconds:.1f} s ({o.layout.title})" for o in outcomes if o.seed_seconds >= 0.05
    )
    table = Table(
        title="taskmill bench: finished tasks kept in place vs moved to history",
        caption=(
            f"Lease 1 + complete 1 cycles, direct (no HTTP), {concurrency} concurrent loops, "
            f"{seconds:g} s measured after a {warmup_seconds(seconds):g} s warm-up; "
            "finished rows in each table; lease call latencies in ms. Seeding the "
            f"finished rows took {seeding or '-'}."
        ),
    )
    table.add_column("layout")
    for name in ("in tasks", f"in {HISTORY_TABLE}", "cycles/s", "lease p50", "lease p99"):
        table.add_column(name, justify="right")
    for outcome in outcomes:
        result = outcome.result
        table.add_row(
            outcome.layout.title,
            f"{outcome.layout.finished_in_tasks:,}",
            f"{outcome.layout.finished_in_history:,}",
            throughput(result),
            millis(result.percentile(50)),
            millis(result.percentile(99)),
        )
    if any(o.result.drained for o in outcomes):
        table.caption = str(table.caption) + DRAINED_NOTE
    return table


def run_terminal_rows(
    server_url: str, *, rows: int, seconds: float, concurrency: int, scratch_db: str
) -> None:
    """Compare the two layouts with ``rows`` finished tasks, in a fresh scratch database."""
    layouts = [
        Layout("empty (reference)", 0, 0),
        Layout("kept in tasks", rows, 0),
        Layout("moved to history", 0, rows, moves_finished=True),
    ]
    database_url = create_scratch(server_url, scratch_db)
    try:
        outcomes = run_async(
            _measure_layouts(database_url, layouts, seconds=seconds, concurrency=concurrency)
        )
    finally:
        drop_scratch(server_url, scratch_db)
    results_console().print(_table(outcomes, seconds=seconds, concurrency=concurrency))
