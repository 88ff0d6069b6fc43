"""The hot-path scenarios, each measured over HTTP and directly, side by side."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from .drivers import DirectDriver, Driver, HttpDriver, direct_container, http_client
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
from .output import DRAINED_NOTE, progress_bar, results_console, throughput
from .scratch import admin_connection, create_scratch, drop_scratch, reset, seed_pending
from .server import uvicorn_server
from .supersede import TARGET, SupersedeFigures, measure_supersede

#: Tasks per request in the batched scenarios.
BATCH = 100


@dataclass(frozen=True)
class Scenario:
    """One workload: what each loop iteration does, ``batch`` tasks at a time."""

    title: str
    batch: int
    submits: bool
    leases: bool
    #: Pending tasks to seed per second of run time, for scenarios that only consume:
    #: well above what this workload reaches on a 2-core machine, so the queue lasts.
    seed_per_second: int = 0
    #: The HTTP/direct ratio this scenario should reach (reported, not asserted).
    target: float | None = None


SCENARIOS = (
    Scenario("1. submit", 1, submits=True, leases=False),
    Scenario(f"2. submit, batch {BATCH}", BATCH, submits=True, leases=False),
    Scenario("3. lease+complete", 1, submits=False, leases=True, seed_per_second=5_000),
    Scenario(
        f"4. lease+complete, batch {BATCH}",
        BATCH,
        submits=False,
        leases=True,
        seed_per_second=30_000,
    ),
    Scenario("5. end-to-end", 1, submits=True, leases=True, target=0.5),
    Scenario(f"6. end-to-end, batch {BATCH}", BATCH, submits=True, leases=True, target=0.5),
)

#: Run untimed before the first scenario: it uses the submit, claim and completion
#: statements, so every pooled connection has them prepared before anything is measured.
WARM_UP = SCENARIOS[4]


def step(scenario: Scenario, driver: Driver) -> Step:
    """One loop iteration of ``scenario`` through ``driver``; counts finished tasks and
    requests."""
    batched = scenario.batch > 1

    async def run(meter: Meter) -> None:
        if scenario.submits:
            if batched:
                await driver.submit_many(scenario.batch)
            else:
                await driver.submit_one()
            meter.request()
        if not scenario.leases:
            meter.add(scenario.batch)
            return
        lease_ids = await driver.lease(scenario.batch)
        meter.request()
        if not lease_ids:
            if scenario.submits:
                # Concurrent claimers skip each other's locked rows (SKIP LOCKED), so a
                # claim can miss work that exists; it stays queued for the next one.
                return
            raise QueueDrained
        if batched:
            await driver.complete_many(lease_ids)
        else:
            await driver.complete_one(lease_ids[0])
        meter.request()
        meter.add(len(lease_ids))

    return run


@dataclass(frozen=True)
class Row:
    """A scenario's two figures."""

    scenario: Scenario
    http: Result
    direct: Result


async def _measure_all(
    database_url: str, server_url: str, *, seconds: float, concurrency: int
) -> tuple[list[Row], SupersedeFigures, str]:
    """Every scenario over HTTP then directly, then supersede; also the PostgreSQL version."""
    rows = []
    async with (
        direct_container(database_url) as taskmill,
        http_client(server_url, concurrency) as client,
        admin_connection(database_url) as admin,
    ):
        drivers: dict[str, Driver] = {"HTTP": HttpDriver(client), "direct": DirectDriver(taskmill)}
        with progress_bar() as progress:
            bar = progress.add_task("", total=(len(SCENARIOS) + 1) * len(drivers) + 1)
            for mode, driver in drivers.items():
                progress.update(bar, description=f"warming up [{mode}]")
                await reset(admin)
                await measure(
                    step(WARM_UP, driver),
                    concurrency=concurrency,
                    seconds=first_run_seconds(seconds),
                )
                progress.advance(bar)
            for scenario in SCENARIOS:
                results = {}
                for mode, driver in drivers.items():
                    progress.update(bar, description=f"{scenario.title} [{mode}]")
                    await reset(admin)
                    if scenario.seed_per_second:
                        await seed_pending(admin, seed_count(scenario.seed_per_second, seconds))
                    results[mode] = await measure(
                        step(scenario, driver), concurrency=concurrency, seconds=seconds
                    )
                    progress.advance(bar)
                rows.append(Row(scenario, results["HTTP"], results["direct"]))
            progress.update(bar, description="supersede [HTTP]")
            await reset(admin)
            supersede = await measure_supersede(client, seconds=seconds, concurrency=concurrency)
            progress.advance(bar)
        version = str(await admin.fetchval("SHOW server_version")).split()[0]
    return rows, supersede, version


def _supersede_table(figures: SupersedeFigures, *, concurrency: int) -> Table:
    table = Table(
        title="taskmill bench: supersede (latest value wins), over HTTP",
        caption=(
            f"Requests/s with {concurrency} concurrent loops. Running holders: an acking "
            f"worker held the keys and acknowledged {figures.revoked:,} revocations. "
            f"Cost = time per request relative to a plain submit (target ≤ {TARGET:g} for "
            "a pending holder)."
        ),
    )
    table.add_column("scenario")
    table.add_column("requests/s", justify="right")
    table.add_column("cost vs submit", justify="right")
    for title, result in (
        ("plain submit (baseline)", figures.submit),
        ("supersede, one hot key, pending holder", figures.hot_key),
        ("supersede, many keys, pending holders", figures.many_keys),
        ("supersede, running holders, acking worker", figures.running),
    ):
        cost = figures.submit.rate / result.rate if result.rate else float("nan")
        verdict = ""
        if result is figures.many_keys:
            verdict = " met" if round(cost, 2) <= TARGET else " MISSED"
        table.add_row(title, throughput(result), f"{cost:.2f}{verdict}")
    return table


def _table(rows: list[Row], *, seconds: float, concurrency: int, version: str) -> Table:
    table = Table(
        title=f"taskmill bench: HTTP vs direct (PostgreSQL {version})",
        caption=(
            f"Tasks/s with {concurrency} concurrent loops, {seconds:g} s measured after a "
            f"{warmup_seconds(seconds):g} s warm-up; end-to-end = submit, lease, complete. "
            "HTTP: uvicorn in its own process, driven by aiohttp from this one; direct: "
            "the domain services called in this process."
        ),
    )
    table.add_column("scenario")
    table.add_column("HTTP/s", justify="right")
    table.add_column("direct/s", justify="right")
    table.add_column("HTTP/direct", justify="right")
    table.add_column("target", justify="right")
    for row in rows:
        # Rounded as shown, so that the verdict never contradicts the figure beside it.
        ratio = round(row.http.rate / row.direct.rate, 2) if row.direct.rate else float("nan")
        target = ""
        if row.scenario.target is not None:
            verdict = "met" if ratio >= row.scenario.target else "MISSED"
            target = f"≥ {row.scenario.target:.2f} {verdict}"
        table.add_row(
            row.scenario.title, throughput(row.http), throughput(row.direct), f"{ratio:.2f}", target
        )
    if any(r.http.drained or r.direct.drained for r in rows):
        table.caption = str(table.caption) + DRAINED_NOTE
    return table


def run_scenarios(server_url: str, *, seconds: float, concurrency: int, scratch_db: str) -> None:
    """Measure every scenario in a fresh scratch database on the server at ``server_url``."""
    database_url = create_scratch(server_url, scratch_db)
    try:
        with uvicorn_server(database_url) as http_url:
            rows, supersede, version = run_async(
                _measure_all(database_url, http_url, seconds=seconds, concurrency=concurrency)
            )
    finally:
        drop_scratch(server_url, scratch_db)
    console = results_console()
    console.print(_table(rows, seconds=seconds, concurrency=concurrency, version=version))
    console.print(_supersede_table(supersede, concurrency=concurrency))
