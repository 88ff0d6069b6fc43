"""The model is a model of the code: random walks of the model's steps, run against the
real service one step at a time, must leave every task exactly as the model says.

The explorer (tests/model) proves the lifecycle table and its reactions keep the
invariants under every interleaving of steps; this proves the SQL and the triggers do
what the model does, step by step: status, phase, lease, attempt, cancel reason,
supersede links, children counters, and the lease's previous_state. Each walk's seed is
printed; ``REPLAY_SEEDS=1,2,3`` runs those instead.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.conftest import ServerFactory
from tests.e2e.lifecycle_harness import Harness
from tests.model.world import Config, previous_state, start, steps

WALKS = [int(s) for s in os.environ.get("REPLAY_SEEDS", "").split(",") if s] or list(range(1, 13))
CONFIG = Config(submits=6, spawns=6, max_attempts=2, states=True)
LENGTH = 60
#: Workers act more often than producers cancel, so that walks go deep: trees that wait,
#: finalize, retry and expire, superseded and cancelled in the middle of it.
WEIGHTS = {
    "submit": 1.0,
    "supersede": 1.0,
    "cancel": 0.3,
    "force": 0.15,
    "lease": 3.0,
    "complete": 2.0,
    "fail_retry": 1.0,
    "fail": 0.4,
    "release": 0.5,
    "expire": 1.0,
    "ack": 2.0,
    "promote": 1.5,
    "spawn": 2.0,
    "save_state": 1.0,
}


@pytest.mark.parametrize("seed", WALKS)
async def test_the_service_follows_the_model(
    seed: int, make_server: ServerFactory, db_url: str
) -> None:
    server = await make_server()
    rng = random.Random(seed)
    harness = Harness(server.client, db_url, CONFIG.max_attempts)
    world = start(CONFIG)
    trail: list[str] = []
    print(f"seed {seed}")
    for _ in range(LENGTH):
        options = list(steps(world, CONFIG))
        if not options:
            break
        ((step, after),) = rng.choices(options, [WEIGHTS[s.action] for s, _ in options])
        trail.append(str(step))
        try:
            granted = await harness.do(step, world, after)
            if granted is not None and step.task is not None:
                assert granted["phase"] == str(after.tasks[step.task].phase)
                source = previous_state(world, step.task)
                expected = None if source is None else {"by": source}
                assert granted["task"]["previous_state"] == expected
            timed = step.action in ("expire", "promote")
            await harness.settle(after, timeout=10.0 if timed else 0.0)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, after {trail}: {exc}") from exc
        world = after
