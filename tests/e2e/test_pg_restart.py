"""PostgreSQL restarted under load: the service reconnects by itself, /readyz shows the
outage (503, then 200 again), no request hangs past its timeout, no task is lost.

The test runs its own PostgreSQL (pgserver's binaries, a private data directory and
socket), so it can stop and start it without touching the server the other tests share.
pgserver also takes care of running PostgreSQL as an unprivileged user when the tests run
as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pgserver
import pytest
from pgserver._commands import pg_ctl

from app.store.db import plain_url
from tests.e2e.replicas import start_replica
from tests.helpers import eventually

REQUEST_TIMEOUT = 20.0  # the client's; the service must answer well within it


class RestartablePostgres:
    """A private PostgreSQL that the test can stop and start again at the same address."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="taskmill-restart-"))
        self.data = self.root / "pgdata"
        self.server = pgserver.get_server(self.data, cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        self.socket_dir = info.socket_dir
        self.url = plain_url(self.server.get_uri())

    def _ctl(self, *args: str) -> None:
        pg_ctl(list(args), pgdata=self.data, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        """Fast shutdown: sessions are terminated, open transactions rolled back."""
        self._ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        """Start again with the options pgserver used (same socket, so the same URL)."""
        log = str(self.data / "log")
        self._ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log, "start")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        with contextlib.suppress(Exception):
            self.server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[RestartablePostgres]:
    pg = RestartablePostgres()
    try:
        yield pg
    finally:
        pg.close()


async def test_postgres_restart_under_load(private_pg: RestartablePostgres, tmp_path: Path) -> None:
    conn = await asyncpg.connect(private_pg.url)
    try:
        await conn.execute("CREATE DATABASE taskmill_restart")
    finally:
        await conn.close()
    db_url = private_pg.url.replace("/postgres?", "/taskmill_restart?")
    assert db_url != private_pg.url
    # Migrations run on start, as `taskmill serve` does by default.
    replica = await start_replica(db_url, tmp_path, args=())
    client = httpx.AsyncClient(base_url=replica.url, timeout=REQUEST_TIMEOUT)
    stop = asyncio.Event()
    acknowledged: dict[str, str] = {}  # dedup key -> task id
    readiness: list[int] = []
    durations: list[float] = []
    errors: list[int] = []

    async def call(method: str, path: str, **kw: Any) -> httpx.Response:
        """Retry 503s (the database is away); a timeout fails the test: nothing may hang."""
        while True:
            started = time.monotonic()
            r = await client.request(method, path, **kw)
            durations.append(time.monotonic() - started)
            if r.status_code != 503:
                return r
            errors.append(r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")
            await asyncio.sleep(0.1)

    async def produce() -> None:
        i = 0
        while not stop.is_set():
            key = f"k{i}"
            r = await call("POST", "/tasks", json={"type": "job", "dedup_key": key})
            assert r.status_code in (200, 201), r.text
            acknowledged.setdefault(key, r.json()["task"]["id"])
            i += 1
            await asyncio.sleep(0.02)

    async def work(name: str) -> None:
        while not stop.is_set():
            r = await call(
                "POST", "/leases", json={"worker_id": name, "max_tasks": 5, "wait_seconds": 1}
            )
            assert r.status_code == 200, r.text
            for grant in r.json()["leases"]:
                r = await call("POST", f"/leases/{grant['lease_id']}/complete", json={})
                # 409: a complete whose commit answer was lost, retried; the task is done.
                assert r.status_code in (200, 409), r.text

    async def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            readiness.append((await client.get("/readyz")).status_code)
            durations.append(time.monotonic() - started)
            await asyncio.sleep(0.1)

    async def last_readiness() -> list[int]:
        return readiness[-1:]

    loops = [asyncio.create_task(f) for f in (produce(), work("w1"), work("w2"), probe())]
    try:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(private_pg.stop)
        await eventually(last_readiness, lambda s: s == [503], 15)
        await asyncio.sleep(2)  # under load while the database is away
        await asyncio.to_thread(private_pg.start)
        await eventually(last_readiness, lambda s: s == [200], 30)
        await asyncio.sleep(1.5)  # under load again after the restart
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops), REQUEST_TIMEOUT + 10)

        # Whatever was acknowledged is there and gets done.
        async def unfinished() -> int:
            r = await call("GET", "/tasks", params={"status": ["pending", "running"]})
            return len(r.json()["tasks"])

        async def drain() -> None:
            while await unfinished():
                r = await call("POST", "/leases", json={"worker_id": "w3", "max_tasks": 100})
                for grant in r.json()["leases"]:
                    await call("POST", f"/leases/{grant['lease_id']}/complete", json={})

        await asyncio.wait_for(drain(), 60)
        for key, task_id in acknowledged.items():
            r = await call("GET", f"/tasks/{task_id}")
            assert r.status_code == 200, (key, r.text)
            assert r.json()["status"] == "completed", (key, r.json())
    finally:
        stop.set()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await client.aclose()
        code = await replica.stop()
    assert code == 0, replica.output()
    # /readyz followed the outage: ready, then 503 while the database was away, then ready.
    first_down = readiness.index(503)
    assert 200 in readiness[:first_down]
    assert readiness[-1] == 200
    assert errors, "no request noticed the outage"
    assert len(acknowledged) > 20
    assert max(durations) < 12, max(durations)
