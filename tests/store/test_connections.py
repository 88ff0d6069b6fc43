"""Broken connections leave the store as Unavailable (a 503), and never go back to the pool.

A fast shutdown of PostgreSQL terminates every session, idle ones in the pool too. What the
next statement on such a connection meets depends on timing: a closed socket
(InterfaceError), or, in the instant between PostgreSQL's "terminating connection" and the
socket's close, a protocol that asyncpg holds out of step (InternalClientError). Either
way the request must get a 503 it can retry, and the connection must not be reused.
"""

from __future__ import annotations

import asyncpg
import pytest

from app.store.db import Database
from app.store.errors import Retryable, Unavailable, translate_driver
from tests.helpers import eventually


async def test_a_terminated_pooled_connection_is_unavailable_then_replaced(db_url: str) -> None:
    db = Database(db_url, pool_size=1, max_overflow=0)
    try:
        async with db.autocommit() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        # Idle in the pool, its session is terminated, as a fast shutdown does.
        admin = await asyncpg.connect(db_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

            async def gone() -> bool:
                alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
                return bool(await admin.fetchval(alive, pid) == 0)

            await eventually(gone, bool, 10)
        finally:
            await admin.close()
        with pytest.raises(Unavailable):
            async with db.autocommit() as conn:
                await conn.fetchval("SELECT 1")
        # The pool's only slot was given back empty: the next caller gets a new session.
        async with db.autocommit() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InternalClientError("cannot switch to state 12; another operation is in progress"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    ],
    ids=["protocol-out-of-step", "closed", "admin-shutdown"],
)
async def test_a_connection_that_broke_is_invalidated(db_url: str, error: Exception) -> None:
    db = Database(db_url, pool_size=1, max_overflow=0)
    try:
        with pytest.raises(Unavailable) as raised:
            async with db.autocommit() as conn:
                broken = conn
                raise error
        assert not isinstance(raised.value, Retryable)
        async with db.autocommit() as conn:
            assert conn is not broken
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.dispose()


async def test_an_aborted_statement_keeps_its_connection(db_url: str) -> None:
    """A deadlock or serialization failure is PostgreSQL's answer on a sound session."""
    db = Database(db_url, pool_size=1, max_overflow=0)
    try:
        with pytest.raises(Retryable):
            async with db.autocommit() as conn:
                kept = conn
                raise asyncpg.DeadlockDetectedError("deadlock detected")
        async with db.autocommit() as conn:
            assert conn is kept
    finally:
        await db.dispose()


def test_driver_errors_without_a_sqlstate_are_unavailable() -> None:
    assert isinstance(translate_driver(asyncpg.InternalClientError("out of step")), Unavailable)
    assert isinstance(translate_driver(asyncpg.InterfaceError("connection is closed")), Unavailable)
