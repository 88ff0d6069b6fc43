"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 10.0
) -> T:
    """Poll ``probe`` until ``check`` accepts its value; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.05)


async def submit(client: httpx.AsyncClient, **task: Any) -> dict[str, Any]:
    """Submit one task (type defaults to 'job') and return the answer's task."""
    task.setdefault("type", "job")
    r = await client.post("/tasks", json=task)
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = r.json()["task"]
    return out


async def lease(client: httpx.AsyncClient, n: int = 1, **req: Any) -> list[dict[str, Any]]:
    """Lease up to ``n`` tasks without waiting."""
    req.setdefault("worker_id", "w1")
    r = await client.post("/leases", json={"max_tasks": n, **req})
    assert r.status_code == 200, r.text
    leases: list[dict[str, Any]] = r.json()["leases"]
    return leases


async def get_task(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """GET /tasks/{id}, asserting it exists."""
    r = await client.get(f"/tasks/{task_id}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def run_command(*cmd: str, cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run a command to its end within ``timeout`` (killed past it): exit status, output."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")
