"""`taskmill serve` as a user runs it: embedded PostgreSQL, then a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.cli import describe_url
from tests.helpers import eventually


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Serving:
    """A running `taskmill serve`; ``output`` (stdout and stderr) is filled in once it exits."""

    proc: asyncio.subprocess.Process
    client: httpx.AsyncClient
    url: str
    output: str = ""


@asynccontextmanager
async def serving(data: Path, *, stop: signal.Signals) -> AsyncIterator[Serving]:
    """`taskmill serve` on the embedded PostgreSQL in ``data``, ready; stopped by ``stop``."""
    port = _free_port()
    # A first-time user's environment: no database, no tokens, and no XDG_RUNTIME_DIR (as in
    # containers and CI), where platformdirs warns while pgserver is imported.
    unset = (
        "DATABASE_URL",
        "TASKMILL_DATABASE_URL",
        "TASKMILL_TOKENS",
        "TASKMILL_TOKENS_FILE",
        "XDG_RUNTIME_DIR",
    )
    env = {k: v for k, v in os.environ.items() if k not in unset}
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            served = Serving(proc, client, url)

            async def ready() -> int:
                if proc.returncode is not None:
                    assert proc.stdout is not None
                    output = (await proc.stdout.read()).decode()
                    raise AssertionError(f"taskmill serve exited early:\n{output}")
                try:
                    return (await client.get("/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await eventually(ready, lambda status: status == 200, timeout=60)
            yield served
    finally:
        if proc.returncode is None:
            proc.send_signal(stop)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    served.output = out.decode()
    assert proc.returncode == 0, served.output


async def test_serve_embedded_then_sigterm_stops_postgres(tmp_path: Path) -> None:
    data = tmp_path / "pgdata"
    async with serving(data, stop=signal.SIGTERM) as served:
        r = await served.client.post("/tasks", json={"type": "hello"})
        assert r.status_code == 201
        postmaster = data / "postmaster.pid"
        assert postmaster.exists()
    assert "embedded PostgreSQL stopped" in served.output
    assert not (data / "postmaster.pid").exists(), "PostgreSQL still running after SIGTERM"


async def test_first_start_says_where_in_a_few_lines(tmp_path: Path) -> None:
    data = tmp_path / "pgdata"
    async with serving(data, stop=signal.SIGINT) as served:
        pass
    lines = served.output.splitlines()
    # Up to uvicorn's "running on" line: what a new user reads before the service answers.
    start = next(i for i, line in enumerate(lines) if "Uvicorn running on" in line)
    start_up = "\n".join(lines[: start + 1])
    assert start + 1 <= 10, served.output
    assert served.url in start_up
    assert f"data in {data}" in start_up
    assert "auth is off" in start_up
    # initdb's and pg_ctl's output and platformdirs' warning are debug detail now.
    for chatter in (
        "The files belonging to this database system",
        "Success. You can now start",
        "server started",
        "XDG_RUNTIME_DIR",
        "pgserver",
    ):
        assert chatter not in served.output, served.output


def test_database_url_is_shown_without_its_password() -> None:
    url = "postgresql://taskmill:s3cret@db.example:5432/taskmill?sslmode=require"
    assert describe_url(url) == "postgresql://taskmill:***@db.example:5432/taskmill?sslmode=require"
    shown = describe_url("postgresql://taskmill@/taskmill?host=/run/pg&password=s3cret")
    assert "s3cret" not in shown and "taskmill@/taskmill" in shown
    assert "s3cret" not in describe_url("not a URL, s3cret")
