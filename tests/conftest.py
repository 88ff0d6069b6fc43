"""Test fixtures: a real PostgreSQL, a migrated template database cloned per test, and
real uvicorn servers on 127.0.0.1.

Without DATABASE_URL the tests start the embedded server (pgserver) once, shared by all
xdist workers; with DATABASE_URL they use that server (its user must be able to create
databases). Each xdist worker migrates its own template; each test gets a fresh clone.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app
from app.store.db import plain_url
from app.store.migrate import upgrade


def _with_db(url: str, name: str) -> str:
    return make_url(plain_url(url)).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a maintenance database on the test server."""
    env = os.environ.get("DATABASE_URL")
    if env:
        yield _with_db(env, "postgres")
        return
    import fcntl

    import pgserver

    data = Path(tempfile.gettempdir()) / "taskmill-test-pgdata"
    # The xdist workers start the one server together. pgserver creates the data directory
    # outside its own lock, so on a fresh machine one worker's initdb could meet the other's
    # half-made directory ("could not change permissions"): one at a time.
    with (Path(tempfile.gettempdir()) / "taskmill-test-pgdata.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield plain_url(server.get_uri())
    finally:
        server.cleanup()


async def _admin(url: str, *sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str, worker_id: str, testrun_uid: str) -> Iterator[str]:
    """A freshly migrated template database, one per xdist worker and test run.

    The run's id is in the name, so two test runs sharing one server never touch each
    other's templates.
    """
    name = f"taskmill_tpl_{testrun_uid[:12]}_{worker_id}"
    asyncio.run(_admin(pg_admin_url, f"CREATE DATABASE {name}"))
    upgrade(_with_db(pg_admin_url, name))
    asyncio.run(_admin(pg_admin_url, f"ALTER DATABASE {name} WITH IS_TEMPLATE true"))
    try:
        yield name
    finally:
        asyncio.run(
            _admin(
                pg_admin_url,
                f"ALTER DATABASE {name} WITH IS_TEMPLATE false",
                f"DROP DATABASE {name} WITH (FORCE)",
            )
        )


@pytest.fixture
async def db_url(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A private database for one test, cloned from the migrated template."""
    name = f"taskmill_t_{uuid.uuid4().hex[:16]}"
    await _admin(pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {template_db}")
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        await _admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_settings(**overrides: Any) -> Settings:
    """Settings tuned for tests: fast sweeps and short poll fallbacks."""
    values: dict[str, Any] = {
        "sweep_interval_seconds": 0.1,
        "poll_fallback_seconds": 0.5,
        "db_pool_size": 5,
        "db_max_overflow": 20,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Server:
    """A running uvicorn server with the real app, and an HTTP client bound to it."""

    url: str
    client: httpx.AsyncClient
    uvicorn: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop serving (lifespan shutdown runs)."""
        await self.client.aclose()
        self.uvicorn.should_exit = True
        await self.task


async def start_server(database_url: str, **overrides: Any) -> Server:
    """Start the app under uvicorn on a free port of 127.0.0.1."""
    sweep = overrides.pop("sweep", True)
    app = create_app(test_settings(**overrides), database_url, sweep=sweep)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited during startup")
        if loop.time() > deadline:
            raise TimeoutError("server did not start within 30 s")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = httpx.AsyncClient(base_url=url, timeout=30)
    return Server(url, client, server, task)


ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server(db_url: str) -> AsyncIterator[ServerFactory]:
    """Start any number of app instances on this test's database."""
    servers: list[Server] = []

    async def factory(**overrides: Any) -> Server:
        server = await start_server(db_url, **overrides)
        servers.append(server)
        return server

    try:
        yield factory
    finally:
        for server in servers:
            await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    """One app instance on this test's database."""
    return await make_server()


@pytest.fixture
async def client(server: Server) -> httpx.AsyncClient:
    """HTTP client of the one app instance."""
    return server.client
