"""`taskmill serve` as a user runs it: embedded PostgreSQL, then a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx

from tests.helpers import eventually


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_embedded_then_sigterm_stops_postgres(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TASKMILL_DATABASE_URL")
    }
    data = tmp_path / "pgdata"
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def ready() -> int:
                if proc.returncode is not None:
                    raise AssertionError("taskmill serve exited early")
                try:
                    return (await client.get("/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await eventually(ready, lambda status: status == 200, timeout=60)
            r = await client.post("/tasks", json={"type": "hello"})
            assert r.status_code == 201
            postmaster = data / "postmaster.pid"
            assert postmaster.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, out.decode()
    assert b"embedded PostgreSQL stopped" in out
    assert not (data / "postmaster.pid").exists(), "PostgreSQL still running after SIGTERM"
