"""A randomized stateful test of the lifecycle against the real service.

Two replicas on one database; producers submitting, superseding, rejecting, cancelling
and force-cancelling a few hot keys; workers leasing in batches and then, at random,
completing, failing with and without retry, releasing, spawning children, saving state,
heartbeating, acknowledging cancels or crashing (their leases expire, revoked ones by the
cancel grace). All at once, over many connections. Meanwhile a checker reads the whole
table in one snapshot, again and again, and checks the lifecycle's invariants
(app/domain/lifecycle.py) in each. Afterwards the producers stop, the workers finish
everything, and the test checks the end: every task over, each with exactly one terminal
event, every task's events a path of the lifecycle table, no answer a 5xx.

The run is seeded (``STATEFUL_SEED``; the seed is printed). Timing still varies between
runs; the seed fixes every choice the actors make.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from app.domain.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    Phase,
    Reason,
    Status,
    TaskView,
    blocked_without_blockers,
    violations,
)
from tests.conftest import ServerFactory

SEED = int(os.environ.get("STATEFUL_SEED", "20261202"))
SECONDS = float(os.environ.get("STATEFUL_SECONDS", "15"))
KEYS = ("a", "b", "c")
ROOT, PART = "sync", "part"
GRACE = 2.0
RETRY = {"max_attempts": 3, "base_seconds": 0.05, "max_seconds": 0.2}
#: Every answer the actors may get: anything else (a 5xx above all) fails the test.
EXPECTED = {200, 201, 409, 410}

_SNAPSHOT_SQL = """
SELECT id, status, phase, lease_expires_at IS NOT NULL AS leased, fence_key, fence_gen,
    type, dedup_key, parent_id, cancel_reason, children_total, children_live,
    children_completed, children_failed
FROM tasks
"""


def views(rows: list[asyncpg.Record]) -> list[TaskView]:
    """The invariants' view of a snapshot of the table."""
    return [
        TaskView(
            id=r["id"],
            status=Status(r["status"]),
            phase=Phase(r["phase"]),
            leased=r["leased"],
            fence=(r["fence_key"], r["fence_gen"]) if r["fence_key"] else None,
            own_key=f"{r['type']}/{r['dedup_key']}" if r["dedup_key"] else None,
            parent=r["parent_id"],
            cancel_reason=Reason(r["cancel_reason"]) if r["cancel_reason"] else None,
            children_total=r["children_total"],
            children_live=r["children_live"],
            children_completed=r["children_completed"],
            children_failed=r["children_failed"],
        )
        for r in rows
    ]


@dataclass
class Run:
    """What the actors share: clients, the stop flags, and what they saw."""

    clients: list[httpx.AsyncClient]
    rng: random.Random
    producing: bool = True
    working: bool = True
    finishing: bool = False
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    snapshots: int = 0
    task_ids: list[str] = field(default_factory=list)
    #: (task leased, the lease whose saved state its lease carried as previous_state)
    handoffs: list[tuple[str, str]] = field(default_factory=list)

    async def call(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any = None
    ) -> httpx.Response:
        r = await client.request(method, path, json=body)
        kind = path.rsplit("/", 1)[-1] if path.startswith("/leases/") else path.split("/")[1]
        self.answers[(kind, r.status_code)] += 1
        if r.status_code not in EXPECTED:
            self.unexpected.append(f"{method} {path} {body!r}: {r.status_code} {r.text[:300]}")
        return r


async def producer(run: Run, n: int) -> None:
    rng = random.Random(run.rng.random())
    client = run.clients[n % 2]
    while run.producing:
        roll = rng.random()
        if roll < 0.75 or not run.task_ids:
            mode = rng.choices(["skip", "supersede", "reject"], [2, 6, 1])[0]
            body = {
                "type": ROOT,
                "dedup_key": rng.choice(KEYS),
                "on_duplicate": mode,
                "retry": RETRY,
                "payload": {"by": n},
            }
            r = await run.call(client, "POST", "/tasks", body)
            if r.status_code in (200, 201):
                run.task_ids.append(r.json()["task"]["id"])
        elif roll < 0.92:
            target = rng.choice(run.task_ids[-30:])
            await run.call(client, "POST", f"/tasks/{target}/cancel")
        else:
            target = rng.choice(run.task_ids[-30:])
            await run.call(client, "POST", f"/tasks/{target}/cancel", {"force": True})
        await asyncio.sleep(rng.uniform(0, 0.15))


async def handle(
    run: Run, client: httpx.AsyncClient, grant: dict[str, Any], rng: random.Random
) -> None:
    """One lease, played out at random (or finished properly once the run winds down)."""
    lease = grant["lease_id"]
    task = grant["task"]
    if task["previous_state"] is not None:
        run.handoffs.append((task["id"], task["previous_state"]["w"]))
    if grant["phase"] == "cancel":
        if run.finishing or rng.random() < 0.8:
            await run.call(client, "POST", f"/leases/{lease}/cancelled")
        return  # else: the worker died in on_cancel; the grace ends it
    if task["type"] == ROOT and grant["phase"] == "execute" and rng.random() < 0.7:
        for _ in range(rng.randint(1, 3)):
            body = {
                "type": PART,
                "parent_id": task["id"],
                "parent_lease_id": lease,
                "retry": RETRY,
            }
            await run.call(client, "POST", "/tasks", body)
    if rng.random() < 0.3:
        await run.call(client, "PATCH", f"/leases/{lease}/state", {"state": {"w": lease}})
    for _ in range(rng.randint(0, 3)):
        r = await run.call(
            client,
            "POST",
            f"/leases/{lease}/heartbeat",
            {"extend_seconds": rng.choice([1, 3, 3600])},
        )
        if r.status_code != 200:
            return
        if r.json()["cancel"] is not None:
            if run.finishing or rng.random() < 0.8:
                await run.call(client, "POST", f"/leases/{lease}/cancelled")
            return  # else: ignores the cancel; its lease ends by the grace
        await asyncio.sleep(rng.uniform(0, 0.2))
    if run.finishing:
        outcome = "complete"
    else:
        outcome = rng.choices(["complete", "retry", "fail", "release", "crash"], [10, 3, 1, 2, 2])[
            0
        ]
    if outcome == "complete":
        r = await run.call(client, "POST", f"/leases/{lease}/complete", {"result": 1})
    elif outcome == "retry":
        body = {"error": "x", "retryable": True, "retry_after_seconds": rng.uniform(0, 0.2)}
        r = await run.call(client, "POST", f"/leases/{lease}/fail", body)
    elif outcome == "fail":
        r = await run.call(
            client, "POST", f"/leases/{lease}/fail", {"error": "x", "retryable": False}
        )
    elif outcome == "release":
        r = await run.call(client, "POST", f"/leases/{lease}/release")
    else:
        return  # crashed: the lease expires
    if r.status_code == 409 and r.json().get("task_status") == "cancelling":
        problem = r.json()
        # The refusal says why, as a heartbeat would (the SDK's on_cancel reason).
        if problem.get("cancel_reason") not in ("cancelled", "superseded") or (
            problem["cancel_reason"] == "superseded" and not problem.get("superseded_by")
        ):
            run.unexpected.append(f"a revoked lease's 409 does not say why: {problem}")
        await run.call(client, "POST", f"/leases/{lease}/cancelled")


async def worker(run: Run, n: int) -> None:
    rng = random.Random(run.rng.random())
    client = run.clients[n % 2]
    while run.working:
        body = {
            "worker_id": f"w{n}",
            "max_tasks": rng.randint(1, 3),
            "lease_seconds": rng.choice([1, 2, 5]),
            "wait_seconds": 0.2,
        }
        r = await run.call(client, "POST", "/leases", body)
        if r.status_code == 200:
            await asyncio.gather(*(handle(run, client, g, rng) for g in r.json()["leases"]))


async def checker(run: Run, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        while run.working:
            rows = await conn.fetch(_SNAPSHOT_SQL)  # one statement: one snapshot
            seen = views(rows)
            for problem in violations(seen) + blocked_without_blockers(seen):
                run.found.append(problem)
            run.snapshots += 1
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def test_random_actors_never_break_the_lifecycle(
    make_server: ServerFactory, db_url: str
) -> None:
    print(f"STATEFUL_SEED={SEED}")
    a = await make_server(cancel_grace_seconds=GRACE)
    b = await make_server(cancel_grace_seconds=GRACE)
    run = Run([a.client, b.client], random.Random(SEED))
    actors = [asyncio.create_task(producer(run, n)) for n in range(3)]
    actors += [asyncio.create_task(worker(run, n)) for n in range(6)]
    watch = asyncio.create_task(checker(run, db_url))
    await asyncio.sleep(SECONDS)  # the run's length; every check below polls or asserts
    run.producing = False
    run.finishing = True
    conn = await asyncpg.connect(db_url)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 45
        while await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE status NOT IN"
            " ('completed', 'failed', 'cancelled', 'superseded', 'expired')"
        ):
            assert loop.time() < deadline, "tasks still not over 45 s after the producers stopped"
            await asyncio.sleep(0.2)
        run.working = False
        await asyncio.gather(*actors, watch)
        rows = await conn.fetch(_SNAPSHOT_SQL)
        supersedes = {
            r["id"]: r["supersedes"] for r in await conn.fetch("SELECT id, supersedes FROM tasks")
        }
        events = await conn.fetch(
            "SELECT task_id, event, data->>'status' AS status, data FROM events"
            " WHERE task_id IS NOT NULL ORDER BY id"
        )
    finally:
        await conn.close()

    print(f"{len(rows)} tasks, {len(events)} events, {run.snapshots} snapshots checked")
    print(sorted(run.answers.items()))
    assert run.unexpected == []
    assert run.found == []
    final = views(rows)
    assert violations(final) == []
    assert all(v.status in TERMINAL for v in final)

    # Every task's events are a path of the table, with exactly one terminal event.
    by_task: dict[str, list[asyncpg.Record]] = {}
    for e in events:
        by_task.setdefault(e["task_id"], []).append(e)
    status_of = {v.id: v.status for v in final}
    terminal_names = {f"task.{s}" for s in TERMINAL}
    for task_id, history in by_task.items():
        # task.deduplicated is no change of the holder: it reports the holder's status as
        # the duplicate submit saw it, which a concurrent supersede may have changed since.
        statuses = [Status(e["status"]) for e in history if e["event"] != "task.deduplicated"]
        for before, after in itertools.pairwise(statuses):
            assert before == after or (before, after) in TRANSITIONS, (task_id, statuses)
        ends = [e["event"] for e in history if e["event"] in terminal_names]
        assert ends == [f"task.{status_of[task_id]}"], (task_id, [e["event"] for e in history])
    assert set(by_task) == set(status_of)

    # State handoff: a lease's previous_state was saved by a task up its supersedes chain.
    for task_id, saved_by in run.handoffs:
        chain, cursor = [], supersedes[task_id]
        while cursor is not None:
            chain.append(cursor)
            cursor = supersedes[cursor]
        assert saved_by.split(".")[0] in chain, (task_id, saved_by, chain)
    print(f"{len(run.handoffs)} leases carried a predecessor's state")
    assert run.handoffs

    # The run met the situations of the issue (else it proved little).
    met = Counter()
    for e in events:
        data = json.loads(e["data"])
        if e["event"] == "task.cancelling" and data.get("phase") == "cancel":
            met["execute phase over, then cancelled: cancel phase"] += 1
        if e["event"] == "task.leased" and data.get("phase") == "cancel":
            met["cancel-phase lease"] += 1
        if e["event"] == "task.created" and data.get("blocked_on") and not data.get("supersedes"):
            met["plain submit blocked by a cancel"] += 1
        if e["event"] == "task.created" and data.get("blocked_on") and data.get("supersedes"):
            met["replacement blocked"] += 1
        if e["event"] == "task.unblocked":
            met["replacement released"] += 1
        if e["event"] == "task.cancelling" and data.get("cascade"):
            met["cascade revoked a child"] += 1
        if e["event"] == "lease.expired" and e["status"] in ("cancelled", "superseded"):
            met["revoked lease ended by expiry or grace"] += 1
        if data.get("forced"):
            met["force cancel"] += 1
    print(dict(met))
    assert len(met) == 8, met
