"""``taskmill bench --tags N``: tag queries and tagged submits with N tasks, and the layouts.

In a fresh scratch database seeded with N tasks carrying five tags each (see
:mod:`taskmill_bench.tagseed`), this measures:

1. the latency (p50/p99, one call at a time) of the tag queries a consumer makes: the
   first page of a selective tag filter and of a common (10%) one, the value counts of
   a key, and an aggregate grouped by a tag over the pending set; directly through the
   domain services and over HTTP against a real uvicorn process;
2. submit throughput with 0, 5 and 20 tags per task over HTTP, one task per request and
   in batches, and what the tags cost relative to none;
3. the two tag layouts side by side: (a) the service's JSONB column under a GIN
   ``jsonb_path_ops`` index, and (b) a ``task_tags(task_id, key, value)`` table (a
   benchmark-only model, :mod:`taskmill_bench.tagtable`), on the same data, with the same
   queries at the store level and the same submits through the domain.

Queries are measured before anything is submitted, so they see exactly the seeded data.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.table import Table
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.service import Taskmill
from app.schemas.common import IO
from app.schemas.tasks import TaskSubmit
from app.store import queries

from .drivers import BenchError, LoadClient, direct_container, http_client
from .measure import Meter, Result, Step, first_run_seconds, measure, run_async, warmup_seconds
from .output import DRAINED_NOTE, millis, progress_bar, results_console, throughput
from .scenarios import BATCH
from .scratch import admin_connection, create_scratch, drop_scratch
from .server import uvicorn_server
from .tagseed import (
    DIRECTIONS,
    DST_ENDPOINTS,
    PARTS,
    PROFILES,
    TASK_TYPE,
    Seeded,
    dst_endpoint,
    object_key,
    seed_tagged,
)
from .tagtable import (
    create_tag_table,
    drop_gin_index,
    storage_bytes,
    submits_into_tag_table,
)
from .tagtable import first_page as model_first_page
from .tagtable import sum_tx_by_tag as model_sum_tx_by_tag
from .tagtable import tag_values as model_tag_values

K = TypeVar("K")

#: Tasks per page: the API's default page size.
PAGE = 100
#: Most groups or values asked for: the API's default limit.
GROUPS = 1000
#: Latency samples per query and mode: at least this many calls, even past ``seconds``...
MIN_CALLS = 20
#: ...unless that would take longer than this many times ``seconds``.
MAX_STRETCH = 3
#: Issue #4's targets: p50 of a selective first page and of the aggregate, in ms.
SELECTIVE_TARGET_MS = 5.0
AGGREGATE_TARGET_MS = 150.0
#: Issue #4's target: 5 tags cost at most this share of submit throughput.
TAGS_COST_TARGET = 0.25
#: Tags per task in the submit measurements.
TAG_COUNTS = (0, 5, 20)
#: The key values are counted and aggregates grouped by.
GROUP_KEY = "dst_endpoint"
#: What an aggregate sums.
SUM_FIELD = "expected_io.net_tx_bytes"


class Picker:
    """Fresh filter values for each call, drawn from the seeded data (repeatably)."""

    def __init__(self, tasks: int, seed: int = 4) -> None:
        self.tasks = tasks
        self.rng = random.Random(seed)

    def object_key(self) -> str:
        """The ``object_key`` of a random seeded task."""
        return object_key(self.rng.randint(1, self.tasks))

    def profile(self) -> str:
        """A random ``profile`` value."""
        return self.rng.choice(PROFILES)


async def _get(client: LoadClient, path: str, params: dict[str, str]) -> Any:
    response = await client.get(path, params=params)
    if response.status_code != 200:
        raise BenchError(f"GET {path} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def _tag_filter(key: str, value: str) -> queries.TaskFilter:
    return queries.TaskFilter(tags=[(key, [value])])


PENDING = queries.TaskFilter(statuses=("pending",))


@dataclass(frozen=True)
class Query:
    """One tag query, in the four forms the bench runs it."""

    title: str
    #: Which tasks it reads (the table's "reads" column).
    reads: str
    target_ms: float | None
    #: Over HTTP.
    http: Callable[[LoadClient, Picker], Awaitable[object]]
    #: Through the domain services.
    direct: Callable[[Taskmill, Picker], Awaitable[object]]
    #: The service's statement, at the store level (layout (a)).
    layout_a: Callable[[AsyncConnection, Picker], Awaitable[object]]
    #: The task_tags model's statement, at the store level (layout (b)).
    layout_b: Callable[[AsyncConnection, Picker], Awaitable[object]]


QUERIES = (
    Query(
        "selective tag, first page",
        "tag.object_key=<one task's>: 1 task",
        SELECTIVE_TARGET_MS,
        http=lambda c, p: _get(c, "/tasks", {"tag.object_key": p.object_key()}),
        direct=lambda t, p: t.tasks.list(_tag_filter("object_key", p.object_key()), None, PAGE),
        layout_a=lambda c, p: queries.list_tasks(
            c, _tag_filter("object_key", p.object_key()), None, PAGE + 1
        ),
        layout_b=lambda c, p: model_first_page(c, "object_key", p.object_key(), PAGE + 1),
    ),
    Query(
        "10% tag, first page",
        "tag.profile=<one of 10>: 10% of tasks",
        None,
        http=lambda c, p: _get(c, "/tasks", {"tag.profile": p.profile()}),
        direct=lambda t, p: t.tasks.list(_tag_filter("profile", p.profile()), None, PAGE),
        layout_a=lambda c, p: queries.list_tasks(
            c, _tag_filter("profile", p.profile()), None, PAGE + 1
        ),
        layout_b=lambda c, p: model_first_page(c, "profile", p.profile(), PAGE + 1),
    ),
    Query(
        f"values of {GROUP_KEY}",
        f"GET /tags/{GROUP_KEY}/values: all tasks",
        None,
        http=lambda c, p: _get(c, f"/tags/{GROUP_KEY}/values", {}),
        direct=lambda t, p: t.tags.values(GROUP_KEY, (), None, GROUPS),
        layout_a=lambda c, p: queries.tag_values(c, GROUP_KEY, (), None, GROUPS),
        layout_b=lambda c, p: model_tag_values(c, GROUP_KEY, GROUPS),
    ),
    Query(
        f"aggregate by {GROUP_KEY}",
        f"group_by=tag.{GROUP_KEY}&sum=…net_tx_bytes&status=pending",
        AGGREGATE_TARGET_MS,
        http=lambda c, p: _get(
            c,
            "/tasks/aggregate",
            {"group_by": f"tag.{GROUP_KEY}", "sum": SUM_FIELD, "status": "pending"},
        ),
        direct=lambda t, p: t.tags.aggregate(
            PENDING, [f"tag.{GROUP_KEY}"], [("sum", SUM_FIELD)], GROUPS
        ),
        layout_a=lambda c, p: queries.aggregate(
            c, PENDING, [f"tag.{GROUP_KEY}"], [("sum", SUM_FIELD)], GROUPS + 1
        ),
        layout_b=lambda c, p: model_sum_tx_by_tag(c, GROUP_KEY, ("pending",), GROUPS + 1),
    ),
)


async def sample_latency(call: Callable[[], Awaitable[object]], *, seconds: float) -> Result:
    """Call ``call`` one at a time: a warm-up, then ``seconds`` of timed calls.

    At least :data:`MIN_CALLS` timed calls unless that takes :data:`MAX_STRETCH` times
    longer; ``Result.tasks`` counts the calls.
    """
    warm_until = time.perf_counter() + warmup_seconds(seconds)
    for n in itertools.count():
        await call()
        if n >= 1 and time.perf_counter() >= warm_until:
            break
    latencies: list[float] = []
    began = time.perf_counter()
    while True:
        start = time.perf_counter()
        await call()
        end = time.perf_counter()
        latencies.append(end - start)
        elapsed = end - began
        if elapsed >= seconds and (len(latencies) >= MIN_CALLS or elapsed >= MAX_STRETCH * seconds):
            return Result(len(latencies), elapsed, False, tuple(latencies))


# -- submits --------------------------------------------------------------------------


def submission_tags(i: int, count: int) -> dict[str, str]:
    """``count`` tags (0, or 5 and more) for the ``i``-th submitted task."""
    if count == 0:
        return {}
    if count < 5:
        raise ValueError("0 or at least 5 tags")
    tags = {
        "profile": PROFILES[i % len(PROFILES)],
        "dst_endpoint": dst_endpoint(i % DST_ENDPOINTS),
        "direction": DIRECTIONS[i % 2],
        "object_key": object_key(i),
        "part": str(1 + i % PARTS),
    }
    for j in range(1, count - 4):
        tags[f"attr_{j:02d}"] = f"v{(i + j) % 10}"
    return tags


#: Every submitted task's expected I/O: the same whatever its tags.
EXPECTED_IO = IO(read_bytes=8 << 20, net_tx_bytes=8 << 20)


class Submissions:
    """Tagged submissions numbered after the seeded tasks (so object keys stay unique)."""

    def __init__(self, after: int) -> None:
        self.numbers = itertools.count(after + 1)

    def body(self, tags: int) -> dict[str, Any]:
        """A ``POST /tasks`` body."""
        i = next(self.numbers)
        return {
            "type": TASK_TYPE,
            "payload": {"n": i},
            "tags": submission_tags(i, tags),
            "expected_io": EXPECTED_IO.model_dump(),
        }

    def item(self, tags: int) -> TaskSubmit:
        """The same submission as :meth:`body`, as the API hands it to the domain.

        Built without validation (the HTTP figures include it): the direct loops measure
        the service, not the bench's own object building.
        """
        i = next(self.numbers)
        return TaskSubmit.model_construct(
            type=TASK_TYPE, payload={"n": i}, tags=submission_tags(i, tags), expected_io=EXPECTED_IO
        )


def http_submits(client: LoadClient, made: Submissions, tags: int, batch: int) -> Step:
    """Submit ``batch`` tasks with ``tags`` tags each per iteration, over HTTP."""

    async def run(meter: Meter) -> None:
        if batch == 1:
            response = await client.post("/tasks", json=made.body(tags))
            expected = 201
        else:
            body = {"tasks": [made.body(tags) for _ in range(batch)]}
            response = await client.post("/tasks/batch", json=body)
            expected = 200
        if response.status_code != expected:
            raise BenchError(f"submit answered {response.status_code}: {response.text[:500]}")
        meter.add(batch)

    return run


def direct_submits(taskmill: Taskmill, made: Submissions, tags: int, batch: int) -> Step:
    """Submit ``batch`` tasks with ``tags`` tags each per iteration, through the domain."""

    async def run(meter: Meter) -> None:
        if batch == 1:
            await taskmill.tasks.submit(made.item(tags))
        else:
            await taskmill.tasks.submit_batch([made.item(tags) for _ in range(batch)])
        meter.add(batch)

    return run


#: Submit figures that are compared with each other are measured in this many
#: interleaved rounds, so that a change in the machine's load (it is shared) falls on
#: all of them alike rather than on whichever ran at the time.
ROUNDS = 3


async def measure_interleaved(
    steps: dict[K, Step], *, concurrency: int, seconds: float
) -> dict[K, Result]:
    """Measure each step for ``seconds`` in all, in :data:`ROUNDS` interleaved rounds."""
    parts: dict[K, list[Result]] = {key: [] for key in steps}
    for _ in range(ROUNDS):
        for key, step in steps.items():
            result = await measure(step, concurrency=concurrency, seconds=seconds / ROUNDS)
            parts[key].append(result)
    return {
        key: Result(
            tasks=sum(r.tasks for r in results),
            seconds=sum(r.seconds for r in results),
            drained=any(r.drained for r in results),
            latencies=tuple(x for r in results for x in r.latencies),
        )
        for key, results in parts.items()
    }


# -- the run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Latencies:
    """One query's figures: direct and HTTP, and on the two layouts (store level)."""

    query: Query
    direct: Result
    http: Result
    layout_a: Result
    layout_b: Result


@dataclass(frozen=True)
class LayoutSubmits:
    """Direct submit figures of one layout."""

    none_batched: Result
    five_batched: Result
    five_single: Result


@dataclass
class Figures:
    """Everything the tables show."""

    seeded: Seeded
    tag_table_seconds: float
    storage: tuple[int, int, int]
    version: str
    latencies: list[Latencies]
    #: (tags per task, batch) -> HTTP submit result.
    submits: dict[tuple[int, int], Result]
    layout_submits: dict[str, LayoutSubmits]


async def _seed(database_url: str, tasks: int) -> tuple[Seeded, float, tuple[int, int, int]]:
    """Seed the tasks, then the task_tags model from them."""
    async with admin_connection(database_url) as admin:
        with progress_bar() as progress:
            bar = progress.add_task(f"seeding {tasks:,} tagged tasks", total=2)
            seeded = await seed_tagged(admin, tasks)
            progress.advance(bar)
            progress.update(bar, description="seeding the task_tags model")
            began = time.perf_counter()
            await create_tag_table(admin)
            tag_table_seconds = time.perf_counter() - began
            progress.advance(bar)
        storage = await storage_bytes(admin)
    return seeded, tag_table_seconds, storage


def _comparable(answer: object) -> object:
    """A query's answer in a form both layouts share: page ids, or plain tuples."""
    if not isinstance(answer, list):
        return answer
    out: list[object] = []
    for item in answer:
        if isinstance(item, RowMapping):
            out.append(item["id"])
        elif isinstance(item, queries.AggregateRow):
            out.append((item.key[0], item.count, item.metrics[("sum", SUM_FIELD)]))
        else:
            out.append(item)
    return out


async def _check(taskmill: Taskmill, tasks: int, pending: int) -> None:
    """The data is as seeded, and both layouts answer every query alike."""
    key = Picker(tasks, seed=1).object_key()
    page = await taskmill.tasks.list(_tag_filter("object_key", key), None, PAGE)
    if [t.tags["object_key"] for t in page.tasks] != [key]:
        raise BenchError(f"expected one task tagged object_key={key}, got {len(page.tasks)}")
    groups = await taskmill.tags.aggregate(PENDING, [f"tag.{GROUP_KEY}"], [], GROUPS)
    if sum(g.count for g in groups.groups) != pending:
        raise BenchError(f"the aggregate does not count the {pending:,} pending tasks")
    async with taskmill.db.transaction() as conn:
        for query in QUERIES:
            a = _comparable(await query.layout_a(conn, Picker(tasks, seed=2)))
            b = _comparable(await query.layout_b(conn, Picker(tasks, seed=2)))
            if a != b:
                raise BenchError(f"{query.title}: the two layouts disagree")


def _latency_calls(
    query: Query, taskmill: Taskmill, client: LoadClient, picker: Picker
) -> list[Callable[[], Awaitable[object]]]:
    """The query's four forms as calls: direct, HTTP, layout (a), layout (b)."""

    def on_layout(
        run: Callable[[AsyncConnection, Picker], Awaitable[object]],
    ) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            async with taskmill.db.transaction() as conn:
                return await run(conn, picker)

        return call

    return [
        lambda: query.direct(taskmill, picker),
        lambda: query.http(client, picker),
        on_layout(query.layout_a),
        on_layout(query.layout_b),
    ]


async def _measure(
    database_url: str,
    server_url: str,
    *,
    tasks: int,
    pending: int,
    seconds: float,
    concurrency: int,
) -> tuple[list[Latencies], dict[tuple[int, int], Result], dict[str, LayoutSubmits], str]:
    latencies = []
    layouts: dict[str, LayoutSubmits] = {}
    made = Submissions(tasks)
    async with (
        direct_container(database_url) as taskmill,
        http_client(server_url, concurrency) as client,
        admin_connection(database_url) as admin,
    ):
        steps = len(QUERIES) + 1 + 2 + 1
        with progress_bar() as progress:
            bar = progress.add_task("checking the seeded data", total=steps)
            await _check(taskmill, tasks, pending)
            progress.advance(bar)
            for query in QUERIES:
                progress.update(bar, description=f"{query.title}: direct, HTTP, (a), (b)")
                calls = _latency_calls(query, taskmill, client, Picker(tasks))
                results = [await sample_latency(call, seconds=seconds) for call in calls]
                latencies.append(Latencies(query, *results))
                progress.advance(bar)
            # Untimed: every pooled connection of the server opens and prepares the submit.
            progress.update(bar, description="submits: warming up")
            await measure(
                http_submits(client, made, 5, 1),
                concurrency=concurrency,
                seconds=first_run_seconds(seconds),
            )
            progress.update(bar, description="submits with 0, 5, 20 tags [HTTP]")
            submits = await measure_interleaved(
                {
                    (count, batch): http_submits(client, made, count, batch)
                    for batch in (1, BATCH)
                    for count in TAG_COUNTS
                },
                concurrency=concurrency,
                seconds=seconds,
            )
            progress.advance(bar)
            for name in ("a", "b"):
                progress.update(bar, description=f"layout ({name}): submits [direct]")
                if name == "b":
                    await drop_gin_index(admin)
                with submits_into_tag_table() if name == "b" else nullcontext():
                    # Untimed: every pooled connection prepares this layout's statement.
                    await measure(
                        direct_submits(taskmill, made, 5, BATCH),
                        concurrency=concurrency,
                        seconds=first_run_seconds(seconds),
                    )
                    figures = await measure_interleaved(
                        {
                            (count, batch): direct_submits(taskmill, made, count, batch)
                            for count, batch in ((0, BATCH), (5, BATCH), (5, 1))
                        },
                        concurrency=concurrency,
                        seconds=seconds,
                    )
                layouts[name] = LayoutSubmits(
                    figures[(0, BATCH)], figures[(5, BATCH)], figures[(5, 1)]
                )
                progress.advance(bar)
        version = str(await admin.fetchval("SHOW server_version")).split()[0]
    return latencies, submits, layouts, version


# -- tables ---------------------------------------------------------------------------


def _verdict(value: float, target: float, *, at_most: bool = True) -> str:
    met = value <= target if at_most else value >= target
    return "met" if met else "MISSED"


def _latency_table(figures: Figures, *, seconds: float) -> Table:
    seeded = figures.seeded
    table = Table(
        title=f"taskmill bench: tag queries at {seeded.tasks:,} tasks "
        f"(PostgreSQL {figures.version})",
        caption=(
            f"Latency in ms, one call at a time, a fresh random value per call; each query "
            f"timed for {seconds:g} s (and at least {MIN_CALLS} calls) after a warm-up. "
            "Direct: the domain services in this process; HTTP: uvicorn in its own process. "
            f"{seeded.pending:,} pending, {seeded.running:,} running, the rest finished; "
            f"5 tags per task. Seeding took {seeded.insert_seconds:.1f} s (insert) + "
            f"{seeded.index_seconds:.1f} s (indexes, VACUUM ANALYZE). Targets are on the "
            "HTTP p50."
        ),
    )
    table.add_column("query")
    table.add_column("reads")
    for name in ("direct p50", "direct p99", "HTTP p50", "HTTP p99", "calls", "target"):
        table.add_column(name, justify="right")
    for row in figures.latencies:
        target = ""
        if row.query.target_ms is not None:
            p50 = round(row.http.percentile(50) * 1000, 2)
            target = f"≤ {row.query.target_ms:g} {_verdict(p50, row.query.target_ms)}"
        table.add_row(
            row.query.title,
            row.query.reads,
            millis(row.direct.percentile(50)),
            millis(row.direct.percentile(99)),
            millis(row.http.percentile(50)),
            millis(row.http.percentile(99)),
            f"{row.direct.tasks}/{row.http.tasks}",
            target,
        )
    return table


def _cost(result: Result, baseline: Result) -> float:
    """Share of the baseline's throughput lost."""
    return 1 - result.rate / baseline.rate if baseline.rate else float("nan")


def _submit_table(figures: Figures, *, seconds: float, concurrency: int) -> Table:
    table = Table(
        title="taskmill bench: submit with tags, over HTTP",
        caption=(
            f"Tasks/s with {concurrency} concurrent loops, {seconds:g} s measured in "
            f"{ROUNDS} interleaved rounds (each after a {warmup_seconds(seconds / ROUNDS):g} s "
            "warm-up), into the seeded table. Cost = "
            "throughput lost relative to no tags (target for 5 tags: "
            f"≤ {TAGS_COST_TARGET:.0%}). 5 tags as seeded (object_key unique per task); "
            "20 = those 5 and 15 of 10 values each."
        ),
    )
    table.add_column("tags per task")
    for name in ("POST /tasks, tasks/s", "cost", f"batch of {BATCH}, tasks/s", "cost"):
        table.add_column(name, justify="right")
    for count in TAG_COUNTS:
        cells = [f"{count} tags"]
        for batch in (1, BATCH):
            result = figures.submits[(count, batch)]
            cells.append(throughput(result))
            if count == 0:
                cells.append("-")
                continue
            cost = round(_cost(result, figures.submits[(0, batch)]), 2)
            verdict = f" {_verdict(cost, TAGS_COST_TARGET)}" if count == 5 else ""
            cells.append(f"{cost:.0%}{verdict}")
        table.add_row(*cells)
    if any(r.drained for r in figures.submits.values()):
        table.caption = str(table.caption) + DRAINED_NOTE
    return table


#: The layout table's rows, by title (the test checks each is printed).
LAYOUT_ROWS = (
    *(f"{q.title}, {p}" for q in QUERIES for p in ("p50 ms", "p99 ms")),
    "submit 1 task, 5 tags, tasks/s",
    f"submit batch of {BATCH}, 5 tags, tasks/s",
    f"5 tags cost vs none (batch of {BATCH})",
    "tag storage, MB",
)


def _layout_table(figures: Figures, *, seconds: float, concurrency: int) -> Table:
    column, gin, tag_table = figures.storage
    table = Table(
        title=f"taskmill bench: tag layouts at {figures.seeded.tasks:,} tasks",
        caption=(
            "(a) the service: tasks.tags JSONB + GIN jsonb_path_ops; (b) a benchmark-only "
            "model: task_tags(task_id, key, value), primary key (task_id, key), index "
            "(key, value), filled from the same tags (in "
            f"{figures.tag_table_seconds:.1f} s). Queries: the service's statements vs "
            f"their task_tags equivalents, at the store level, one at a time ({seconds:g} s "
            f"each). Submits: through the domain, {concurrency} concurrent loops, (b) with "
            "the tag rows written in the submit statement and no GIN index. Storage: (a) "
            f"the tags column ({column / 2**20:,.0f} MB) + its GIN index "
            f"({gin / 2**20:,.0f} MB); (b) task_tags with its indexes."
        ),
    )
    table.add_column("measure")
    table.add_column("(a) JSONB + GIN", justify="right")
    table.add_column("(b) task_tags", justify="right")
    table.add_column("(b)/(a)", justify="right")

    def ratio(a: float, b: float) -> str:
        return f"{b / a:.2f}" if a else "-"

    titles = iter(LAYOUT_ROWS)
    for row in figures.latencies:
        for p in (50, 99):
            a, b = row.layout_a.percentile(p), row.layout_b.percentile(p)
            table.add_row(next(titles), millis(a), millis(b), ratio(a, b))
    la, lb = figures.layout_submits["a"], figures.layout_submits["b"]
    for a_result, b_result in (
        (la.five_single, lb.five_single),
        (la.five_batched, lb.five_batched),
    ):
        table.add_row(
            next(titles),
            throughput(a_result),
            throughput(b_result),
            ratio(a_result.rate, b_result.rate),
        )
    costs = [_cost(s.five_batched, s.none_batched) for s in (la, lb)]
    table.add_row(next(titles), f"{costs[0]:.0%}", f"{costs[1]:.0%}", "")
    storage = [(column + gin) / 2**20, tag_table / 2**20]
    table.add_row(
        next(titles), f"{storage[0]:,.1f}", f"{storage[1]:,.1f}", ratio(storage[0], storage[1])
    )
    return table


def run_tags(
    server_url: str, *, tasks: int, seconds: float, concurrency: int, scratch_db: str
) -> None:
    """Seed ``tasks`` tagged tasks in a fresh scratch database and measure everything."""
    database_url = create_scratch(server_url, scratch_db)
    try:
        seeded, tag_table_seconds, storage = run_async(_seed(database_url, tasks))
        with uvicorn_server(database_url) as http_url:
            latencies, submits, layouts, version = run_async(
                _measure(
                    database_url,
                    http_url,
                    tasks=tasks,
                    pending=seeded.pending,
                    seconds=seconds,
                    concurrency=concurrency,
                )
            )
    finally:
        drop_scratch(server_url, scratch_db)
    figures = Figures(seeded, tag_table_seconds, storage, version, latencies, submits, layouts)
    console = results_console()
    console.print(_latency_table(figures, seconds=seconds))
    console.print(_submit_table(figures, seconds=seconds, concurrency=concurrency))
    console.print(_layout_table(figures, seconds=seconds, concurrency=concurrency))
