"""Faults with real processes on real PostgreSQL: a replica killed -9 under load, a worker
killed mid-task, and replicas whose clocks are an hour off.

Each test is bounded: every wait has a deadline, every loop a count or a stop flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.api.support import parse_ts
from tests.e2e.replicas import Replica, start_replica
from tests.helpers import eventually

APP = Path(__file__).parents[2] / "app"


async def _rows(db_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


# -- kill -9 one of two replicas under load ------------------------------------------------


async def test_replica_killed_under_load_loses_nothing(db_url: str, tmp_path: Path) -> None:
    n_tasks = 150
    a, b = await asyncio.gather(
        start_replica(db_url, tmp_path, name="a"), start_replica(db_url, tmp_path, name="b")
    )
    alive = {a.url: True, b.url: True}
    clients = {r.url: httpx.AsyncClient(base_url=r.url, timeout=10) for r in (a, b)}
    completions: Counter[str] = Counter()  # task id -> successful complete answers
    acknowledged: dict[str, str] = {}  # dedup key -> task id the service answered
    done = asyncio.Event()
    rng = random.Random(7)

    def pick(preferred: str) -> httpx.AsyncClient:
        return clients[preferred if alive[preferred] else next(u for u in alive if alive[u])]

    async def call(preferred: str, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request; on a dead replica, the same request again on the live one."""
        for _ in range(20):
            client = pick(preferred)
            try:
                r = await client.request(method, path, **kw)
            except httpx.TransportError:
                alive[str(client.base_url)] = False
                preferred = next(u for u in alive if alive[u])
                continue
            if r.status_code == 503:
                await asyncio.sleep(0.1)
                continue
            return r
        raise AssertionError(f"{method} {path} kept failing")

    async def produce() -> None:
        for i in range(n_tasks):
            key = f"k{i}"
            body = {"type": "job", "dedup_key": key, "retry": {"max_attempts": 10}}
            r = await call(a.url if i % 2 else b.url, "POST", "/tasks", json=body)
            assert r.status_code in (200, 201), r.text
            acknowledged.setdefault(key, r.json()["task"]["id"])
            await asyncio.sleep(0.005)

    async def work(name: str, preferred: str) -> None:
        while not done.is_set():
            r = await call(
                preferred,
                "POST",
                "/leases",
                json={"worker_id": name, "max_tasks": 5, "wait_seconds": 0.5, "lease_seconds": 2},
            )
            assert r.status_code == 200, r.text
            for grant in r.json()["leases"]:
                await asyncio.sleep(rng.uniform(0, 0.02))  # "work"
                r = await call(preferred, "POST", f"/leases/{grant['lease_id']}/complete", json={})
                if r.status_code == 200:
                    completions[grant["task"]["id"]] += 1
                elif r.status_code == 409 and r.json().get("task_status") == "completed":
                    # Our first try committed on the killed replica, its answer was lost, and
                    # `call` sent it again: 409 names this lease's own completion (another
                    # lease's would answer 410).
                    completions[grant["task"]["id"]] += 1
                else:  # the lease expired meanwhile: the task comes back, leased again
                    assert r.status_code in (409, 410), r.text

    async def finished() -> int:
        rows = await _rows(db_url, "SELECT count(*) AS n FROM tasks WHERE status = 'completed'")
        return int(rows[0]["n"])

    try:
        workers = [asyncio.create_task(work(f"w{i}", (a.url, b.url)[i % 2])) for i in range(4)]
        producer = asyncio.create_task(produce())

        async def completed_so_far() -> int:
            return len(completions)

        await eventually(completed_so_far, lambda n: n >= 30, 30)
        a.kill()  # mid-load: leases granted by a, requests in flight on a, all cut off
        await asyncio.wait_for(producer, 60)
        await eventually(finished, lambda n: n >= len(set(acknowledged.values())), 60)
        done.set()
        await asyncio.wait_for(asyncio.gather(*workers), 30)
    finally:
        done.set()
        for client in clients.values():
            await client.aclose()
        a.kill()
        await b.stop()
    assert a.proc.returncode == -signal.SIGKILL
    assert not alive[a.url], "no client noticed the kill: it came too late to test anything"
    tasks = await _rows(db_url, "SELECT id, dedup_key, status FROM tasks")
    # Nothing lost: every submission the service acknowledged has a completed task.
    by_id = {t["id"]: t for t in tasks}
    assert len(acknowledged) == n_tasks
    for key, task_id in acknowledged.items():
        assert by_id[task_id]["status"] == "completed", (key, by_id[task_id])
    # Exactly once: every task completed, one accepted completion and one event each.
    assert {t["status"] for t in tasks} == {"completed"}
    assert all(completions[t["id"]] == 1 for t in tasks), completions
    events = await _rows(
        db_url,
        "SELECT task_id, count(*) AS n FROM events WHERE event = 'task.completed' GROUP BY task_id",
    )
    assert {e["task_id"]: e["n"] for e in events} == {t["id"]: 1 for t in tasks}


# -- a worker killed mid-task -------------------------------------------------------------

WORKER = """
import json, sys, time, httpx
url = sys.argv[1]
with httpx.Client(base_url=url, timeout=10) as c:
    r = c.post("/leases", json={"worker_id": "doomed", "wait_seconds": 10, "lease_seconds": 1.5})
    lease = r.json()["leases"][0]
    c.post(f"/leases/{lease['lease_id']}/heartbeat", json={"progress": {"fraction": 0.5}})
    print(json.dumps(lease), flush=True)
    time.sleep(600)  # "working" until killed
"""


async def test_worker_killed_mid_task_is_retried_by_another(db_url: str, tmp_path: Path) -> None:
    server = await start_replica(db_url, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            r = await client.post("/tasks", json={"type": "job", "payload": {"n": 1}})
            task_id = r.json()["task"]["id"]
            worker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WORKER, server.url, stdout=asyncio.subprocess.PIPE
            )
            try:
                assert worker.stdout is not None
                line = await asyncio.wait_for(worker.stdout.readline(), 30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    worker.send_signal(signal.SIGKILL)
                await worker.wait()
            first = httpx.Response(200, content=line).json()
            assert first["task"]["id"] == task_id
            r = await client.get(f"/tasks/{task_id}")
            assert r.json()["status"] == "running"
            assert r.json()["progress"]["fraction"] == 0.5
            # Nobody heartbeats: the lease expires and another worker gets the task.
            r = await client.post(
                "/leases", json={"worker_id": "survivor", "wait_seconds": 15}, timeout=30
            )
            (second,) = r.json()["leases"]
            assert second["task"]["id"] == task_id
            assert second["task"]["attempt"] == 2
            assert second["lease_id"] != first["lease_id"]
            r = await client.post(
                f"/leases/{second['lease_id']}/complete", json={"result": {"by": "survivor"}}
            )
            assert r.status_code == 200, r.text
            # The dead worker's lease is fenced off for good.
            r = await client.post(f"/leases/{first['lease_id']}/complete", json={})
            assert r.status_code == 410, r.text
            task = (await client.get(f"/tasks/{task_id}")).json()
            assert task["status"] == "completed"
            assert task["result"] == {"by": "survivor"}
            assert task["attempt"] == 2
    finally:
        await server.stop()


# -- clocks: lease expiry follows PostgreSQL's clock, never a replica's -----------------------

SKEW = """
import datetime, time_machine
time_machine.travel(
    datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds={offset}), tick=True
).start()
"""


async def _db_now(db_url: str) -> datetime:
    return (await _rows(db_url, "SELECT now() AS now"))[0]["now"]  # type: ignore[no-any-return]


async def test_lease_expiry_uses_the_database_clock(db_url: str, tmp_path: Path) -> None:
    # One replica an hour ahead, one an hour behind; PostgreSQL's clock is right. If
    # either used its own clock, the fast one would expire every lease at once and the
    # slow one would never expire any, and expires_at would be an hour off.
    fast, slow = await asyncio.gather(
        start_replica(db_url, tmp_path, name="fast", prelude=SKEW.format(offset=3600)),
        start_replica(db_url, tmp_path, name="slow", prelude=SKEW.format(offset=-3600)),
    )
    clients = [httpx.AsyncClient(base_url=r.url, timeout=30) for r in (fast, slow)]
    replicas: list[Replica] = [fast, slow]
    try:
        to_fast, to_slow = clients
        task = (await to_fast.post("/tasks", json={"type": "job"})).json()["task"]
        # The replica's clock really is off: the ids it mints carry its time.
        assert (
            task["id"][:10]
            > (await to_slow.post("/tasks", json={"type": "x"})).json()["task"]["id"][:10]
        )
        r = await to_slow.post(
            "/leases", json={"worker_id": "w", "lease_seconds": 4, "types": ["job"]}
        )
        (granted,) = r.json()["leases"]
        expires = parse_ts(granted["expires_at"])
        assert abs(expires - (await _db_now(db_url) + timedelta(seconds=4))) < timedelta(
            seconds=1.5
        )
        # Both replicas sweep every 0.2 s: the fast one would have expired it by now.
        await asyncio.sleep(2)
        assert (await to_fast.get(f"/tasks/{task['id']}")).json()["status"] == "running"
        r = await to_fast.post(
            f"/leases/{granted['lease_id']}/heartbeat", json={"extend_seconds": 1}
        )
        assert r.status_code == 200, r.text
        expires = parse_ts(r.json()["expires_at"])
        assert abs(expires - (await _db_now(db_url) + timedelta(seconds=1))) < timedelta(
            seconds=1.5
        )
        # Only the slow replica sweeps now: it still expires the lease on time.
        await fast.stop()
        replicas.remove(fast)
        before = await _db_now(db_url)

        async def status() -> str:
            return str((await to_slow.get(f"/tasks/{task['id']}")).json()["status"])

        await eventually(status, lambda s: s == "pending", timeout=10)
        assert await _db_now(db_url) - before < timedelta(seconds=5)
        assert (await to_slow.get(f"/tasks/{task['id']}")).json()["attempt"] == 1
    finally:
        for client in clients:
            await client.aclose()
        for replica in replicas:
            await replica.stop()


def test_no_wall_clock_reads_where_time_is_decided() -> None:
    # Lease expiry, run_after, TTLs and backoff are decided in SQL with now(): the store
    # and the lease and sweeper use cases never read the replica's clock.
    pattern = re.compile(r"\b(datetime\.now|datetime\.utcnow|date\.today|time\.time)\(")
    files = [*APP.joinpath("store").rglob("*.py"), APP / "domain" / "leases.py"]
    files.append(APP / "domain" / "sweeper.py")
    found = [str(path.relative_to(APP)) for path in files if pattern.search(path.read_text())]
    assert found == [], found
