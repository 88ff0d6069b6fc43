"""``taskmill bench --fence``: what the lifecycle's database guards cost the claim path.

Two guards sit on every lease of a keyed task: the exclusion constraint ``ex_tasks_fence``
(no two generations of a key hold leases; a GiST index over inet hashes) with the unique
index ``uq_tasks_leased_key``, and on every status change the trigger that refuses a
transition the lifecycle table does not have. This measures lease-1 + complete-1 cycles
(directly, no HTTP) of keyed tasks with the guards as shipped and with each removed in the
scratch database, beside unkeyed tasks (which no fence covers), in interleaved rounds so
that drift of the machine hits every variant alike; it prints the median round.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import asyncpg
from rich.table import Table

from .drivers import DirectDriver, direct_container
from .measure import Result, first_run_seconds, measure, run_async, seed_count, warmup_seconds
from .output import millis, progress_bar, results_console
from .scratch import admin_connection, create_scratch, drop_scratch, reset, seed_pending
from .terminal import SEED_PER_SECOND, cycle

# The transition check removed, the rest of the trigger kept (finished_at and the lease
# must still follow the status, or the table's constraints refuse the change).
_UNCHECKED_TRIGGER = """
CREATE OR REPLACE FUNCTION taskmill_before_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('completed', 'failed', 'cancelled', 'superseded', 'expired') THEN
        NEW.finished_at := now();
    END IF;
    IF NEW.status NOT IN ('running', 'cancelling') THEN
        NEW.lease_expires_at := NULL;
    END IF;
    RETURN NEW;
END $$"""


@dataclass(frozen=True)
class Variant:
    """One way of running the claim path."""

    title: str
    keyed: bool
    without_fence: bool = False
    without_leased_key: bool = False
    without_transition_check: bool = False


VARIANTS = (
    Variant("unkeyed tasks (no fence)", keyed=False),
    Variant("keyed, as shipped", keyed=True),
    Variant("keyed, no exclusion constraint", keyed=True, without_fence=True),
    Variant("keyed, no fence at all", keyed=True, without_fence=True, without_leased_key=True),
    Variant("keyed, no transition check", keyed=True, without_transition_check=True),
)


@dataclass(frozen=True)
class _Originals:
    fence: str
    leased_key: str
    trigger: str


async def _originals(conn: asyncpg.Connection) -> _Originals:
    return _Originals(
        fence=await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'ex_tasks_fence'"
        ),
        leased_key=await conn.fetchval("SELECT pg_get_indexdef('uq_tasks_leased_key'::regclass)"),
        trigger=await conn.fetchval("SELECT pg_get_functiondef('taskmill_before_status'::regproc)"),
    )


async def _arrange(conn: asyncpg.Connection, variant: Variant, originals: _Originals) -> None:
    """The schema as shipped, minus what ``variant`` leaves out."""
    await conn.execute("ALTER TABLE tasks DROP CONSTRAINT IF EXISTS ex_tasks_fence")
    await conn.execute("DROP INDEX IF EXISTS uq_tasks_leased_key")
    if not variant.without_fence:
        await conn.execute(f"ALTER TABLE tasks ADD CONSTRAINT ex_tasks_fence {originals.fence}")
    if not variant.without_leased_key:
        await conn.execute(originals.leased_key)
    await conn.execute(
        _UNCHECKED_TRIGGER if variant.without_transition_check else originals.trigger
    )


async def _measure(
    database_url: str, *, seconds: float, concurrency: int, rounds: int
) -> dict[Variant, list[Result]]:
    results: dict[Variant, list[Result]] = {v: [] for v in VARIANTS}
    async with direct_container(database_url) as taskmill, admin_connection(database_url) as admin:
        driver = DirectDriver(taskmill)
        originals = await _originals(admin)
        with progress_bar() as progress:
            bar = progress.add_task("", total=rounds * len(VARIANTS) + 1)
            progress.update(bar, description="warming up")
            warm = first_run_seconds(seconds)
            await reset(admin)
            await seed_pending(admin, seed_count(SEED_PER_SECOND, warm), keyed=True)
            await measure(cycle(driver, driver.complete_one), concurrency=concurrency, seconds=warm)
            progress.advance(bar)
            for r in range(rounds):
                for variant in VARIANTS:
                    progress.update(bar, description=f"round {r + 1}: {variant.title}")
                    await reset(admin)
                    await _arrange(admin, variant, originals)
                    await seed_pending(
                        admin, seed_count(SEED_PER_SECOND, seconds), keyed=variant.keyed
                    )
                    results[variant].append(
                        await measure(
                            cycle(driver, driver.complete_one),
                            concurrency=concurrency,
                            seconds=seconds,
                        )
                    )
                    progress.advance(bar)
            await _arrange(admin, VARIANTS[1], originals)
    return results


def _median(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.rate)[len(results) // 2]


def run_fence(
    server_url: str, *, seconds: float, concurrency: int, scratch_db: str, rounds: int = 3
) -> None:
    """Measure the guards' cost in a fresh scratch database and print the table."""
    database_url = create_scratch(server_url, scratch_db)
    try:
        results = run_async(
            _measure(database_url, seconds=seconds, concurrency=concurrency, rounds=rounds)
        )
    finally:
        drop_scratch(server_url, scratch_db)
    shipped = statistics.median(r.rate for r in results[VARIANTS[1]])
    table = Table(
        title="taskmill bench: the lifecycle's guards on the claim path",
        caption=(
            f"Lease 1 + complete 1 cycles, direct (no HTTP), {concurrency} concurrent loops, "
            f"{seconds:g} s per variant after a {warmup_seconds(seconds):g} s warm-up, "
            f"{rounds} interleaved rounds: the median round, its lease latencies in ms, and "
            "its rate against keyed tasks as shipped."
        ),
    )
    for name in ("variant", "cycles/s", "vs shipped", "lease p50", "lease p99", "rounds"):
        table.add_column(name, justify="left" if name == "variant" else "right")
    for variant in VARIANTS:
        median = _median(results[variant])
        table.add_row(
            variant.title,
            f"{median.rate:,.0f}",
            f"{median.rate / shipped:.2f}",
            millis(median.percentile(50)),
            millis(median.percentile(99)),
            " / ".join(f"{r.rate:,.0f}" for r in results[variant]),
        )
    results_console().print(table)
