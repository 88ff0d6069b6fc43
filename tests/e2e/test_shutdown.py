"""Graceful shutdown on SIGTERM. Of a real `taskmill serve` process: requests in flight
finish, long polls end at once with an empty answer, nothing is half-written. Of a real
`taskmill worker` process whose service went away: it stops within its shutdown_timeout."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.api.support import table_counts
from tests.e2e import cli_worker
from tests.e2e.replicas import start_replica
from tests.helpers import eventually, get_task, submit

ROOT = Path(__file__).parents[2]


async def test_sigterm_drains_gracefully(db_url: str, tmp_path: Path) -> None:
    replica = await start_replica(db_url, tmp_path)
    batch = json.dumps({"tasks": [{"type": "job", "payload": {"i": i}} for i in range(200)]})
    body = batch.encode()
    half = asyncio.Event()
    go_on = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        # The request is in flight (half its body sent) when the signal arrives.
        yield body[: len(body) // 2]
        half.set()
        await go_on.wait()
        yield body[len(body) // 2 :]

    async with httpx.AsyncClient(base_url=replica.url, timeout=30) as client:
        poll_started = time.monotonic()
        poll = asyncio.create_task(
            client.post("/leases", json={"worker_id": "w", "wait_seconds": 30})
        )
        upload = asyncio.create_task(
            client.post(
                "/tasks/batch", content=slow_body(), headers={"content-type": "application/json"}
            )
        )
        await asyncio.wait_for(half.wait(), 10)
        await asyncio.sleep(0.5)  # both requests are being served
        assert not poll.done()
        replica.proc.send_signal(15)  # SIGTERM

        # The long poll answers at once, empty, although it asked to wait 30 s.
        r = await asyncio.wait_for(poll, 10)
        assert r.status_code == 200, r.text
        assert r.json() == {"leases": []}
        assert time.monotonic() - poll_started < 10

        # The half-sent request is still being served: finish it, it is answered in full.
        await asyncio.sleep(0.5)
        assert replica.proc.returncode is None, "exited with a request in flight"
        go_on.set()
        r = await asyncio.wait_for(upload, 20)
        assert r.status_code == 200, r.text
        assert [x["outcome"] for x in r.json()["results"]] == ["created"] * 200

    code = await asyncio.wait_for(replica.proc.wait(), 30)
    assert code == 0, replica.output()
    # All of the batch and its events, nothing else: no half-written state.
    assert await table_counts(db_url) == (200, 200)
    # And the port is closed: new requests are refused, not queued.
    async with httpx.AsyncClient(base_url=replica.url, timeout=5) as client:
        try:
            await client.get("/healthz")
        except httpx.TransportError:
            pass
        else:
            raise AssertionError("still serving after shutdown")


async def test_a_worker_stops_in_time_when_its_service_went_away(
    db_url: str, tmp_path: Path
) -> None:
    # A worker holding two leases loses its service; then SIGTERM. Its handlers end (one
    # finishes, whose completion can only be retried; one never does and is to be
    # released): the reports that cannot get through must give up at the shutdown
    # deadline, not retry for their whole policy (30 s with this worker's 30 s leases).
    replica = await start_replica(db_url, tmp_path)
    env = {**os.environ, "TASKMILL_URL": replica.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "worker", "tests.e2e.cli_worker:worker",
        "--log-level", "warning",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=replica.url, timeout=10) as client:
            tasks = [await submit(client, type=t) for t in ("polite", "stubborn")]
            for task in tasks:
                running = functools.partial(get_task, client, task["id"])
                await eventually(running, lambda t: t["status"] == "running", timeout=30)
        replica.kill()
        await asyncio.wait_for(replica.proc.wait(), 10)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        took = time.monotonic() - signalled
    finally:
        replica.kill()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = out.decode(errors="replace")
    assert proc.returncode == 0, log
    bound = cli_worker.worker.shutdown_timeout + 5
    assert took < bound, f"stopped after {took:.1f}s, beyond {bound}s:\n{log}"
    # It did try: the completion and the release were made and could not get through.
    assert "complete" in log and "could not release" in log, log
