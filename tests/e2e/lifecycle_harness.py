"""Driving the real service with the model's steps (tests/model/world.py).

A step of the model becomes the HTTP call a producer, a worker or an operator makes. Two
steps are the passage of time: a lease expiry and a due retry. For those the harness moves
the task's deadline into the past with one UPDATE and lets the service's own sweeper act
(polling with a deadline), as it would once the time came.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from tests.model.world import KEY, Step, World

ROOT_TYPE = "sync"


def task_type(world: World, i: int) -> str:
    """Roots share the key's type; each child has a type of its own, so that a worker can
    lease exactly the task the model names (at most one root is ever leasable)."""
    return ROOT_TYPE if world.tasks[i].parent is None else f"part{i}"


@dataclass
class Harness:
    """The ids the service gave to the model's tasks, and the leases held on them."""

    client: httpx.AsyncClient
    db_url: str
    max_attempts: int
    ids: list[str] = field(default_factory=list)
    leases: dict[int, str] = field(default_factory=dict)

    async def sql(self, statement: str, *args: Any) -> None:
        """Move time for one task (see the module docstring)."""
        conn = await asyncpg.connect(self.db_url)
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    async def do(self, step: Step, before: World, after: World) -> dict[str, Any] | None:
        """Make the call of ``step``; returns the lease it granted, if it is a lease."""
        c = self.client
        i = step.task
        a = step.action
        if a in ("submit", "supersede"):
            body = {
                "type": ROOT_TYPE,
                "dedup_key": KEY,
                "on_duplicate": "supersede" if a == "supersede" else "skip",
                "retry": {"max_attempts": self.max_attempts},
            }
            r = await c.post("/tasks", json=body)
            assert r.status_code == 201, r.text
            self.ids.append(r.json()["task"]["id"])
            return None
        assert i is not None
        tid = self.ids[i]
        lease = self.leases.get(i)
        if a == "lease":
            r = await c.post(
                "/leases",
                json={"worker_id": "replay", "types": [task_type(before, i)], "max_tasks": 2},
            )
            assert r.status_code == 200, r.text
            got = r.json()["leases"]
            assert [g["task"]["id"] for g in got] == [tid], (step, got)
            self.leases[i] = got[0]["lease_id"]
            granted: dict[str, Any] = got[0]
            return granted
        if a == "spawn":
            r = await c.post(
                "/tasks",
                json={
                    "type": task_type(after, len(self.ids)),
                    "parent_id": tid,
                    "parent_lease_id": lease,
                    "retry": {"max_attempts": self.max_attempts},
                },
            )
            assert r.status_code == 201, r.text
            self.ids.append(r.json()["task"]["id"])
            return None
        if a in ("expire", "promote"):
            column = "lease_expires_at" if a == "expire" else "run_after"
            await self.sql(
                f"UPDATE tasks SET {column} = now() - interval '1 second' WHERE id = $1", tid
            )
            return None  # the sweeper does the rest: the caller waits for the model's world
        calls = {
            "complete": ("POST", f"/leases/{lease}/complete", {"result": {"by": i}}),
            "fail_retry": (
                "POST",
                f"/leases/{lease}/fail",
                {"error": "again", "retryable": True, "retry_after_seconds": 3600},
            ),
            "fail": ("POST", f"/leases/{lease}/fail", {"error": "no", "retryable": False}),
            "release": ("POST", f"/leases/{lease}/release", None),
            "ack": ("POST", f"/leases/{lease}/cancelled", None),
            "cancel": ("POST", f"/tasks/{tid}/cancel", None),
            "force": ("POST", f"/tasks/{tid}/cancel", {"force": True}),
            "save_state": ("PATCH", f"/leases/{lease}/state", {"state": {"by": i}}),
        }
        method, path, body = calls[a]
        r = await c.request(method, path, json=body)
        assert r.status_code == 200, (step, r.text)
        return None

    async def observe(self) -> list[dict[str, Any]]:
        """Every task as the service shows it."""
        out = []
        for tid in self.ids:
            r = await self.client.get(f"/tasks/{tid}")
            assert r.status_code == 200, r.text
            out.append(r.json())
        return out

    def expected(self, world: World) -> list[dict[str, Any]]:
        """The same fields, as the model says they must be."""
        return [
            {
                "status": str(t.status),
                "phase": str(t.phase),
                "leased": t.leased,
                "attempt": t.attempt,
                "cancel_reason": None if t.reason is None else str(t.reason),
                "superseded_by": None if t.superseded_by is None else self.ids[t.superseded_by],
                "supersedes": None if t.supersedes is None else self.ids[t.supersedes],
                "children": {
                    "total": t.total,
                    "live": t.live,
                    "completed": t.completed,
                    "failed": t.failed,
                },
            }
            for t in world.tasks
        ]

    @staticmethod
    def shown(task: dict[str, Any]) -> dict[str, Any]:
        """The fields :meth:`expected` speaks of, from the service's record."""
        return {
            "status": task["status"],
            "phase": task["phase"],
            "leased": task["lease"] is not None,
            "attempt": task["attempt"],
            "cancel_reason": task["cancel_reason"],
            "superseded_by": task["superseded_by"],
            "supersedes": task["supersedes"],
            "children": task["children"],
        }

    async def settle(self, world: World, timeout: float = 10.0) -> None:
        """Wait until the service shows the model's world (the sweeper may still be acting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        want = self.expected(world)
        while True:
            have = [self.shown(t) for t in await self.observe()]
            if have == want:
                return
            if loop.time() > deadline:
                diff = [
                    (i, self.ids[i], h, w)
                    for i, (h, w) in enumerate(zip(have, want, strict=True))
                    if h != w
                ]
                raise AssertionError(f"the service and the model disagree: {diff}")
            await asyncio.sleep(0.05)
