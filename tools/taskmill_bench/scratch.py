"""The scratch database the benchmark runs in, and bulk seeding of its tasks table.

Seeding bypasses the app on purpose: one ``INSERT … SELECT generate_series`` writes
hundreds of thousands of rows in about a second, where submitting them through the
service would take longer than the measurement itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url

from app.schemas.tasks import TaskSubmit
from app.store.common import dumps
from app.store.db import plain_url
from app.store.migrate import upgrade

#: Scratch database names must start with this: the bench drops the database it is given,
#: and a typo must not name a real one.
SCRATCH_PREFIX = "taskmill_bench"

#: Task type of every task the benchmark creates.
TASK_TYPE = "bench"

#: What a seeded task looks like: the defaults of an API submission of this type, so a
#: seeded row is the row ``POST /tasks`` would have written for the same body.
SEED_TASK = TaskSubmit(type=TASK_TYPE, payload={"n": 1})


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server (libpq form)."""
    return make_url(plain_url(url)).set(database=name).render_as_string(hide_password=False)


@asynccontextmanager
async def admin_connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection, for CREATE/DROP DATABASE, seeding and resetting."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        yield conn
    finally:
        await conn.close()


async def _admin(url: str, *statements: str) -> None:
    async with admin_connection(url) as conn:
        for statement in statements:
            await conn.execute(statement)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_scratch(server_url: str, name: str, *, migrate: bool = True) -> str:
    """Drop and re-create database ``name``, migrate it (unless not ``migrate``: an empty
    database for another schema), and return its URL.

    Blocking, and must run outside any event loop: the Alembic upgrade runs its own.
    ``server_url`` is any database on the server (used only for CREATE/DROP DATABASE).
    """
    asyncio.run(
        _admin(
            server_url,
            f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)",
            f"CREATE DATABASE {_quoted(name)}",
        )
    )
    url = with_database(server_url, name)
    if migrate:
        upgrade(url)
    return url


def drop_scratch(server_url: str, name: str) -> None:
    """Drop database ``name`` (blocking; outside any event loop)."""
    asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)"))


async def reset(conn: asyncpg.Connection) -> None:
    """Empty the tables the hot paths write, so every measurement starts alike."""
    await conn.execute("TRUNCATE tasks, events")


# Seeded ids are hex numbers behind a two-character prefix. Hex digits are digits of
# the app's Crockford alphabet, so these are valid task ids (lease ids parse); real
# ids start "01" followed by a letter above F for the next few centuries, so seeded
# ids sort below every id the app mints and never collide with one. Prefix "00" marks
# old terminal rows, "01" seeded pending work.
# A keyed task (``keyed``) holds key "k<i>", and starts its own fence generation, as a
# keyed submit writes it.
_SEED_PENDING_SQL = """
INSERT INTO tasks (id, type, status, priority, payload, max_attempts, backoff,
    backoff_base_seconds, backoff_max_seconds, dedup_key, fence_key, fence_gen)
SELECT s.id, $2, 'pending', $3, CAST($4 AS jsonb), $5, $6, $7, $8,
    CASE WHEN $9 THEN 'k' || i END, CASE WHEN $9 THEN $2 || '/k' || i END,
    CASE WHEN $9 THEN s.id END
FROM generate_series(1, $1) AS i, LATERAL (SELECT '01' || lpad(upper(to_hex(i)), 24, '0')) s(id)
ORDER BY i
"""


async def seed_pending(conn: asyncpg.Connection, n: int, *, keyed: bool = False) -> None:
    """Add ``n`` leasable tasks, in id order (each with a dedup key of its own when
    ``keyed``), then refresh the planner's statistics."""
    retry = SEED_TASK.retry
    await conn.execute(
        _SEED_PENDING_SQL,
        n,
        SEED_TASK.type,
        SEED_TASK.priority,
        dumps(SEED_TASK.payload),
        retry.max_attempts,
        retry.backoff,
        retry.base_seconds,
        retry.max_seconds,
        keyed,
    )
    await conn.execute("VACUUM ANALYZE tasks")


# A finished task as the app leaves it: leased once, completed a second later, its lease
# token and worker kept (no expiry: a finished task holds no lease), a small result.
# Finish times are spread over the past n seconds.
_SEED_TERMINAL_SQL = """
INSERT INTO {table} (id, type, status, priority, payload, max_attempts, backoff,
    backoff_base_seconds, backoff_max_seconds, attempt, run_after, created_at,
    updated_at, started_at, finished_at, lease_token, lease_worker, lease_expires_at,
    lease_seconds, result)
SELECT '00' || lpad(upper(to_hex(i)), 24, '0'), $2, 'completed', $3,
    jsonb_build_object('n', i), $4, $5, $6, $7, 1, at, at, at + interval '1 second', at,
    at + interval '1 second', gen_random_uuid(), 'bench-seed', NULL,
    30, '{{"ok": true}}'
FROM generate_series(1, $1) AS i,
    LATERAL (SELECT now() - make_interval(secs => $1 - i)) AS a(at)
ORDER BY i
"""


async def seed_terminal(conn: asyncpg.Connection, n: int, table: str = "tasks") -> None:
    """Add ``n`` completed tasks to ``table`` (``tasks`` or the history model's table)."""
    retry = SEED_TASK.retry
    await conn.execute(
        _SEED_TERMINAL_SQL.format(table=_quoted(table)),
        n,
        SEED_TASK.type,
        SEED_TASK.priority,
        retry.max_attempts,
        retry.backoff,
        retry.base_seconds,
        retry.max_seconds,
    )
