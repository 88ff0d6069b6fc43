"""Supersede throughput over HTTP, beside a plain submit measured in the same run.

Each loop submits with ``on_duplicate: supersede``; what differs is who holds the key:

* one hot key, pending holder: every loop replaces the same task (they queue up on that
  one row's lock, which is the point: latest value wins, one change at a time);
* many keys, pending holders: the loops cycle through a key space wide enough that two
  loops rarely meet on one key;
* running holders: an acking worker leases each replacement and heartbeats it; when the
  server says cancel it acknowledges at once (an empty on_cancel), so most supersedes
  revoke a live lease.

The cost of superseding a pending holder is compared with a plain submit of a fresh
task: the target is at most 1.5 times its cost (time per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass

from .drivers import LoadClient
from .measure import Meter, Result, Step, measure

TYPE = "bench.supersede"
#: The running-holders scenario's own type, so its worker leases only those tasks.
RUNNING_TYPE = "bench.supersede.running"
#: Keys per loop in the many-keys scenario.
KEYS_PER_LOOP = 100
#: Keys in the running-holders scenario: few, so the worker holds most of them.
RUNNING_KEYS = 20
#: Target: a supersede of a pending holder costs at most this many plain submits.
TARGET = 1.5


def _submits(client: LoadClient, keys: list[str] | None, task_type: str = TYPE) -> Step:
    """Submit one task per call: a fresh one, or superseding the next key in ``keys``."""
    turn = itertools.count()

    async def run(meter: Meter) -> None:
        body: dict[str, object] = {"type": task_type, "payload": {"v": 1}}
        if keys is not None:
            key = keys[next(turn) % len(keys)]
            body |= {"dedup_key": key, "on_duplicate": "supersede"}
        response = await client.post("/tasks", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
        meter.add(1)

    return run


async def _acking_worker(client: LoadClient, acks: list[int]) -> None:
    """Lease replacements, heartbeat them, acknowledge every revocation; until cancelled."""
    held: list[str] = []
    while True:
        response = await client.post(
            "/leases",
            json={"worker_id": "bench-acker", "types": [RUNNING_TYPE], "max_tasks": 50},
        )
        held += [lease["lease_id"] for lease in response.json()["leases"]]
        still = []
        for lease_id in held:
            beat = await client.post(f"/leases/{lease_id}/heartbeat", json={})
            if beat.status_code != 200:
                continue
            if beat.json()["cancel"] is None:
                still.append(lease_id)
            elif (await client.post(f"/leases/{lease_id}/cancelled")).status_code == 200:
                acks[0] += 1
        held = still


@dataclass(frozen=True)
class SupersedeFigures:
    """The baseline and the three scenarios, with the revocations the worker saw."""

    submit: Result
    hot_key: Result
    many_keys: Result
    running: Result
    revoked: int


async def measure_supersede(
    client: LoadClient, *, seconds: float, concurrency: int
) -> SupersedeFigures:
    """Plain submit, then the three supersede scenarios, all over HTTP."""
    submit = await measure(_submits(client, None), concurrency=concurrency, seconds=seconds)
    hot = await measure(_submits(client, ["hot"]), concurrency=concurrency, seconds=seconds)
    many = [f"many-{i}" for i in range(KEYS_PER_LOOP * concurrency)]
    many_keys = await measure(_submits(client, many), concurrency=concurrency, seconds=seconds)
    acks = [0]
    worker = asyncio.create_task(_acking_worker(client, acks))
    try:
        running_keys = [f"running-{i}" for i in range(RUNNING_KEYS)]
        running = await measure(
            _submits(client, running_keys, RUNNING_TYPE), concurrency=concurrency, seconds=seconds
        )
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    return SupersedeFigures(submit, hot, many_keys, running, acks[0])
