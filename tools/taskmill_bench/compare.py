"""``taskmill bench --compare``: taskmill over HTTP against the raw SQL limit and PgQueuer.

Three work items, each measured three ways in the same run:

1. single submit: pgbench inserting one row per statement; PgQueuer's ``enqueue`` of one
   job; ``POST /tasks``.
2. end-to-end, unbatched: pgbench's insert, claim one (``FOR UPDATE SKIP LOCKED``),
   complete it, three autocommitted statements; PgQueuer's 5 consumers draining a
   seeded queue 10 jobs per dequeue; taskmill as the SDK runs a worker: loops submitting
   one task each while worker loops lease up to 10 and complete them one at a time.
3. end-to-end, batch 100: the same 100 at a time (pgbench, taskmill), and PgQueuer's 5
   consumers at 100 per dequeue.

taskmill runs in ``replicas`` uvicorn processes on one scratch database, its HTTP loops
split evenly across them; each replica count is a contender of its own. With a baseline
(a checkout of an older taskmill), one more contender runs that version's code in one
uvicorn process on the same database, driven by the same loops and requests. Every
contender is measured once per repetition, all of them in turn (rep 1 of each, then rep
2, ...), so that drift of a shared machine hits them alike; the tables show min, median
and max over the repetitions, taskmill's median against the other two (and against the
baseline's), and the CPU per task and per request of the service's processes and of
PostgreSQL over exactly the measured window.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import asyncpg
from rich.console import Console
from rich.table import Table

from .cpu import CpuWindow, Sample, postmaster_pid
from .drivers import Driver, HttpDriver, http_client
from .measure import Meter, Step, first_run_seconds, measure_loops, run_async, warmup_seconds
from .output import DRAINED_NOTE, progress_bar, results_console
from .pgbench import CYCLE_100, CYCLE_ONE, INSERT_ONE, PgBench, Script, run_seconds
from .pgqueuer_baseline import CONSUMERS, PgQueuerBaseline, pgqueuer_baseline
from .pgqueuer_baseline import VERSION as PGQUEUER_VERSION
from .scenarios import BATCH, Scenario, step
from .scratch import admin_connection, create_scratch, drop_scratch, reset
from .server import ServerProcess, uvicorn_processes

#: Tasks one unbatched worker leases at most (then completes one at a time), as the SDK's
#: worker leases up to its free slots.
WORKER_LEASE = 10
#: Long-poll time of the unbatched workers' leases: they wait for work as the SDK's
#: worker does, rather than spin on empty answers (never past the window's end, where
#: the submitting loops stop and a poll would only run out).
WORKER_WAIT_SECONDS = 1.0

_SUBMIT = Scenario("submit", 1, submits=True, leases=False)
_BATCHED = Scenario(f"end-to-end, batch {BATCH}", BATCH, submits=True, leases=True)


class Kind(StrEnum):
    """Who does the work."""

    RAW = "raw SQL (pgbench)"
    PGQUEUER = f"PgQueuer {PGQUEUER_VERSION}"
    TASKMILL = "taskmill"
    #: An older taskmill, run from a checkout of it (``--baseline``).
    BASELINE = "taskmill baseline"


@dataclass(frozen=True)
class Item:
    """One work item, and what each contender does for it (for the caption)."""

    title: str
    raw: Script
    #: PgQueuer's dequeue batch, or ``None`` for single enqueues.
    pgqueuer_batch: int | None
    caption: str


SUBMIT = Item(
    "1. single submit",
    INSERT_ONE,
    None,
    "pgbench: one INSERT per transaction. PgQueuer: one enqueue() per call. taskmill: POST /tasks.",
)
CYCLE = Item(
    "2. end-to-end, unbatched",
    CYCLE_ONE,
    10,
    "pgbench: INSERT one, claim one (UPDATE … WHERE id = (SELECT … LIMIT 1 FOR UPDATE "
    f"SKIP LOCKED)), complete it: 3 autocommitted statements. PgQueuer: {CONSUMERS} "
    "consumers dequeue 10 at a time from a seeded queue and log_jobs() them successful "
    "(enqueueing not in the window). taskmill, as the SDK runs a worker: half the loops "
    f"POST /tasks one at a time, half lease up to {WORKER_LEASE} (long poll "
    f"{WORKER_WAIT_SECONDS:g} s) and POST /leases/{{id}}/complete one at a time.",
)
BATCHED = Item(
    f"3. end-to-end, batch {BATCH}",
    CYCLE_100,
    BATCH,
    f"pgbench: INSERT {BATCH} (generate_series), claim {BATCH}, complete them: 3 "
    f"autocommitted statements. PgQueuer: {CONSUMERS} consumers dequeue {BATCH} at a time "
    f"from a seeded queue and log_jobs() them. taskmill: POST /tasks/batch of {BATCH}, "
    f"lease {BATCH}, POST /leases/complete of them.",
)
ITEMS = (SUBMIT, CYCLE, BATCHED)


@dataclass(frozen=True)
class Contender:
    """One contender on one work item (taskmill with a number of replicas)."""

    item: Item
    kind: Kind
    replicas: int = 0
    #: The baseline's short commit.
    rev: str = ""

    @property
    def title(self) -> str:
        """The row title."""
        if self.kind is Kind.BASELINE:
            return f"taskmill {self.rev} (baseline)"
        if self.kind is Kind.TASKMILL:
            return f"taskmill, {self.replicas} process{'es' if self.replicas > 1 else ''}"
        if self.kind is Kind.PGQUEUER:
            return f"{self.kind.value} (in-process)"
        return self.kind.value


def contenders(replicas: Sequence[int], baseline: str | None = None) -> list[Contender]:
    """Every contender of every item, in the order of one repetition; ``baseline`` is
    the short commit of the baseline, if there is one."""
    return [
        c
        for item in ITEMS
        for c in (
            Contender(item, Kind.RAW),
            Contender(item, Kind.PGQUEUER),
            *(Contender(item, Kind.TASKMILL, n) for n in replicas),
            *([] if baseline is None else [Contender(item, Kind.BASELINE, 1, baseline)]),
        )
    ]


@dataclass(frozen=True)
class Target:
    """A figure of the issue's, for taskmill's rows of one item (reported, not asserted)."""

    item: Item
    #: A column key of :data:`COLUMNS`.
    column: str
    bound: float
    #: ``≥ bound`` when true, else ``≤ bound``.
    at_least: bool

    def verdict(self, shown: float) -> str:
        """The bound and whether ``shown`` (the figure as printed) meets it."""
        met = shown >= self.bound if self.at_least else shown <= self.bound
        return f"{'≥' if self.at_least else '≤'} {self.bound:g} {'met' if met else 'MISSED'}"


TARGETS = (
    Target(BATCHED, "pgqueuer", 1.0, at_least=True),
    Target(SUBMIT, "pgqueuer", 0.5, at_least=True),
    Target(SUBMIT, "server_request", 0.5, at_least=False),
    Target(CYCLE, "server_request", 0.5, at_least=False),
    Target(CYCLE, "db_task", 1.0, at_least=False),
    Target(BATCHED, "server_task", 0.05, at_least=False),
)

#: Column keys and headers of an item's table, after the contender.
COLUMNS = {
    "min": "min/s",
    "median": "median/s",
    "max": "max/s",
    "raw": "÷ raw SQL",
    "pgqueuer": "÷ PgQueuer",
    #: Only with a baseline.
    "baseline": "÷ baseline",
    "server_task": "server ms/task",
    "server_request": "server ms/req",
    "db_task": "db ms/task",
    "db_request": "db ms/req",
}


def parse_replicas(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` as replica counts (distinct, ascending); ``ValueError`` if malformed."""
    try:
        counts = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise ValueError(f"not a comma-separated list of counts: {text!r}") from None
    if counts[0] < 1:
        raise ValueError("replica counts must be at least 1")
    return tuple(counts)


def short_rev(checkout: Path) -> str:
    """The checkout's commit, abbreviated as git does; its directory's name if git
    cannot tell (no git, or not a work tree)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return checkout.name
    return result.stdout.strip()


def _producer(driver: Driver) -> Step:
    async def run(meter: Meter) -> None:
        await driver.submit_one()
        meter.request()

    return run


def _sdk_worker(driver: Driver) -> Step:
    async def run(meter: Meter) -> None:
        wait = min(WORKER_WAIT_SECONDS, max(0.0, meter.ends_at - time.perf_counter()))
        lease_ids = await driver.lease(WORKER_LEASE, wait_seconds=wait)
        meter.request()
        for lease_id in lease_ids:
            await driver.complete_one(lease_id)
            meter.request()
            meter.add(1)

    return run


@dataclass(frozen=True)
class _Served:
    """A taskmill server and the driver of its HTTP loops."""

    server: ServerProcess
    driver: HttpDriver


@dataclass(frozen=True)
class _Rig:
    """What the contenders run on, and how each one is measured."""

    pgbench: PgBench
    pgqueuer: PgQueuerBaseline
    taskmill_admin: asyncpg.Connection
    #: The installed taskmill's servers, as many as the most replicas.
    replicas: Sequence[_Served]
    baseline: _Served | None
    postmaster: int | None
    concurrency: int
    seconds: float

    def _taskmill_steps(self, item: Item, served: Sequence[_Served]) -> list[Step]:
        """The item's loops, loop ``i`` on server ``i mod len(served)``."""
        c = self.concurrency
        if item is CYCLE:
            producers = max(1, c // 2)
            make: list[Callable[[Driver], Step]] = [_producer] * producers
            make += [_sdk_worker] * max(1, c - producers)
        else:
            scenario = _SUBMIT if item is SUBMIT else _BATCHED
            make = [lambda driver: step(scenario, driver)] * c
        return [factory(served[i % len(served)].driver) for i, factory in enumerate(make)]

    def _servers_of(self, contender: Contender) -> Sequence[_Served]:
        if contender.kind is Kind.BASELINE:
            assert self.baseline is not None, "a baseline contender without a baseline"
            return [self.baseline]
        return self.replicas[: contender.replicas]

    async def warm_up(self) -> None:
        """Untimed unbatched cycles on every server: pools opened, statements prepared.

        The baseline gets as many loops of its own meanwhile as the replicas share, so
        it is warmed as they are, in the same time.
        """
        await reset(self.taskmill_admin)
        steps = self._taskmill_steps(CYCLE, self.replicas)
        if self.baseline is not None:
            steps += self._taskmill_steps(CYCLE, [self.baseline])
        await measure_loops(steps, seconds=first_run_seconds(self.seconds))

    async def run(self, contender: Contender) -> Sample:
        """Measure ``contender`` once."""
        item = contender.item
        if contender.kind is Kind.RAW:
            return await self.pgbench.run(
                item.raw,
                clients=self.concurrency,
                seconds=self.seconds,
                window=CpuWindow((), self.postmaster),
            )
        if contender.kind is Kind.PGQUEUER:
            window = CpuWindow((), self.postmaster, in_process=True)
            if item.pgqueuer_batch is None:
                return await self.pgqueuer.single_enqueue(
                    concurrency=self.concurrency, seconds=self.seconds, window=window
                )
            return await self.pgqueuer.drain(
                item.pgqueuer_batch, seconds=self.seconds, window=window
            )
        await reset(self.taskmill_admin)
        served = self._servers_of(contender)
        window = CpuWindow([s.server.pid for s in served], self.postmaster)
        result = await measure_loops(
            self._taskmill_steps(item, served), seconds=self.seconds, window=window
        )
        return Sample(result.rate, result.tasks, result.requests, window.use, result.drained)


@dataclass(frozen=True)
class Urls:
    """The three scratch databases."""

    taskmill: str
    sql: str
    pgqueuer: str


@dataclass(frozen=True)
class Baseline:
    """The older taskmill measured beside the installed one."""

    #: Its short commit.
    rev: str
    server: ServerProcess


async def _measure_all(
    urls: Urls,
    replicas: Sequence[ServerProcess],
    baseline: Baseline | None,
    everyone: Sequence[Contender],
    *,
    seconds: float,
    concurrency: int,
    reps: int,
) -> tuple[dict[Contender, list[Sample]], str]:
    """Every contender ``reps`` times, interleaved; also the PostgreSQL version."""
    samples: dict[Contender, list[Sample]] = {c: [] for c in everyone}
    async with AsyncExitStack() as stack:
        taskmill_admin = await stack.enter_async_context(admin_connection(urls.taskmill))
        sql_admin = await stack.enter_async_context(admin_connection(urls.sql))
        pgqueuer = await stack.enter_async_context(
            pgqueuer_baseline(urls.pgqueuer, connections=max(concurrency, CONSUMERS))
        )

        async def connect(server: ServerProcess) -> _Served:
            client = await stack.enter_async_context(http_client(server.url, concurrency))
            return _Served(server, HttpDriver(client))

        script_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pgbench-")))
        pgbench = PgBench(sql_admin, urls.sql, script_dir)
        await pgbench.install()
        rig = _Rig(
            pgbench=pgbench,
            pgqueuer=pgqueuer,
            taskmill_admin=taskmill_admin,
            replicas=[await connect(server) for server in replicas],
            baseline=None if baseline is None else await connect(baseline.server),
            postmaster=await postmaster_pid(taskmill_admin),
            concurrency=concurrency,
            seconds=seconds,
        )
        with progress_bar() as progress:
            bar = progress.add_task("warming up", total=reps * len(everyone) + 1)
            await rig.warm_up()
            progress.advance(bar)
            for rep in range(reps):
                for contender in everyone:
                    progress.update(
                        bar, description=f"rep {rep + 1}: {contender.item.title}, {contender.title}"
                    )
                    samples[contender].append(await rig.run(contender))
                    progress.advance(bar)
        version = str(await taskmill_admin.fetchval("SHOW server_version")).split()[0]
    return samples, version


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if len(known) == len(values) else None


def _per(samples: list[Sample], cpu: Callable[[Sample], float | None], unit: str) -> float | None:
    """Median over the repetitions of CPU milliseconds per task or per request."""

    def one(sample: Sample) -> float | None:
        seconds = cpu(sample)
        count = sample.tasks if unit == "task" else sample.requests
        return None if seconds is None or not count else seconds * 1000 / count

    return _median_or_none([one(s) for s in samples])


_RATIOS = ("raw", "pgqueuer", "baseline")
_RATES = ("min", "median", "max")


def _figures(
    samples: list[Sample],
    kind: Kind,
    *,
    raw: float,
    pgqueuer: float,
    baseline: float | None,
) -> dict[str, float | None]:
    """A row's figures by column key: ratios over raw SQL and PgQueuer for taskmill's
    rows (the baseline's too), over the baseline for the installed taskmill's."""
    rates = [s.rate for s in samples]
    median = statistics.median(rates)
    taskmill = kind in (Kind.TASKMILL, Kind.BASELINE)
    return {
        "min": min(rates),
        "median": median,
        "max": max(rates),
        "raw": median / raw if taskmill and raw else None,
        "pgqueuer": median / pgqueuer if taskmill and pgqueuer else None,
        "baseline": median / baseline if kind is Kind.TASKMILL and baseline else None,
        "server_task": _per(samples, lambda s: s.cpu.server, "task"),
        "server_request": _per(samples, lambda s: s.cpu.server, "request"),
        "db_task": _per(samples, lambda s: s.cpu.database, "task"),
        "db_request": _per(samples, lambda s: s.cpu.database, "request"),
    }


def _cell(key: str, value: float | None) -> str:
    if value is None:
        return "" if key in _RATIOS else "-"
    if key in _RATES:
        return f"{value:,.0f}"
    return f"{value:.2f}" if key in _RATIOS else f"{value:.3f}"


def _item_table(
    item: Item,
    samples: dict[Contender, list[Sample]],
    *,
    seconds: float,
    concurrency: int,
    reps: int,
    version: str,
    baseline: Baseline | None,
) -> Table:
    mine = {c: s for c, s in samples.items() if c.item is item}
    median = {c.kind: statistics.median(x.rate for x in s) for c, s in mine.items()}
    columns = [key for key in COLUMNS if baseline is not None or key != "baseline"]
    versus = (
        ""
        if baseline is None
        else f" ÷ baseline: over the median of taskmill {baseline.rev}, one uvicorn process "
        "of that checkout on the same database, sent the same requests (targets are judged "
        "on the installed taskmill's rows only)."
    )
    table = Table(
        title=f"taskmill bench --compare: {item.title} (PostgreSQL {version})",
        caption=(
            f"{item.caption} Tasks/s over {reps} interleaved repetitions: {concurrency} "
            f"concurrent loops or pgbench clients, {seconds:g} s measured after a "
            f"{warmup_seconds(seconds):g} s warm-up (pgbench: -T {run_seconds(seconds)}, "
            "tps without connection set-up). ÷: taskmill's median over raw SQL's and "
            f"PgQueuer's.{versus} CPU, median of the repetitions, over the measured window: "
            "server = the uvicorn processes (for PgQueuer the bench process it runs in; none "
            "for pgbench), db = every PostgreSQL process; req = an HTTP request, a library "
            "call, a statement."
        ),
    )
    table.add_column("contender")
    for key in columns:
        table.add_column(COLUMNS[key], justify="right")
    drained = False
    for contender, runs in mine.items():
        figures = _figures(
            runs,
            contender.kind,
            raw=median[Kind.RAW],
            pgqueuer=median[Kind.PGQUEUER],
            baseline=median.get(Kind.BASELINE),
        )
        cells = {key: _cell(key, value) for key, value in figures.items()}
        if any(s.drained for s in runs):
            drained = True
            cells["median"] += " *"
        for target in TARGETS:
            if (
                contender.kind is Kind.TASKMILL
                and target.item is item
                and figures[target.column] is not None
            ):
                # Judged on the figure as printed, so the verdict never contradicts it.
                shown = cells[target.column]
                cells[target.column] = f"{shown} {target.verdict(float(shown))}"
        table.add_row(contender.title, *(cells[key] for key in columns))
    if drained:
        table.caption = str(table.caption) + DRAINED_NOTE
    return table


#: Wide enough for an item's table, its ÷ baseline column included: a file or pipe has
#: no width of its own, and rich's default of 80 columns would fold every row.
_MIN_WIDTH = 180


def _console() -> Console:
    console = results_console()
    if not console.is_terminal:
        console.width = max(console.width, _MIN_WIDTH)
    return console


def run_compare(
    server_url: str,
    *,
    seconds: float,
    concurrency: int,
    reps: int,
    replicas: Sequence[int],
    scratch_db: str,
    baseline: Path | None = None,
) -> None:
    """Measure every contender in fresh scratch databases and print a table per item.

    ``scratch_db`` holds taskmill's schema; pgbench's table and PgQueuer's schema get
    databases of their own beside it (named after it), so none sees the others' rows.
    ``baseline``, a checkout (work tree) of an older taskmill with the same migrations,
    adds a contender: that code in one uvicorn process on ``scratch_db``.

    Raises :class:`~.server.ServerStartError`, naming the checkout, if a server does not
    start or would not run its own code on this schema.
    """
    started = time.perf_counter()
    rev = None if baseline is None else short_rev(baseline)
    everyone = contenders(replicas, rev)
    names = (scratch_db, f"{scratch_db}_sql", f"{scratch_db}_pgqueuer")
    try:
        urls = Urls(
            create_scratch(server_url, names[0]),
            create_scratch(server_url, names[1], migrate=False),
            create_scratch(server_url, names[2], migrate=False),
        )
        # Every replica count runs on the first of these servers; the rest, and the
        # baseline, stay idle meanwhile (their sweeps and listeners cost PostgreSQL next
        # to nothing).
        n = max(replicas)
        checkouts: list[Path | None] = [None] * n
        if baseline is not None:
            checkouts.append(baseline)
        with uvicorn_processes(urls.taskmill, checkouts) as servers:
            base = None if rev is None else Baseline(rev, servers[n])
            samples, version = run_async(
                _measure_all(
                    urls,
                    servers[:n],
                    base,
                    everyone,
                    seconds=seconds,
                    concurrency=concurrency,
                    reps=reps,
                )
            )
    finally:
        for name in names:
            drop_scratch(server_url, name)
    console = _console()
    for item in ITEMS:
        console.print(
            _item_table(
                item,
                samples,
                seconds=seconds,
                concurrency=concurrency,
                reps=reps,
                version=version,
                baseline=base,
            )
        )
    if base is not None:
        # Checked before the server started; printed so that the output says what ran.
        console.print(f"baseline: taskmill {base.rev}, app imported from {base.server.app}")
    console.print(f"total run time: {time.perf_counter() - started:.0f} s")
