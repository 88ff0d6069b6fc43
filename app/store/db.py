"""Engine, transactions and the URL conventions of the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .errors import Unavailable, translate


def async_url(url: str) -> str:
    """Turn any ``postgres://`` / ``postgresql://`` URL into the asyncpg dialect's form."""
    for prefix in (
        "postgresql+asyncpg://",
        "postgresql+psycopg://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


def plain_url(url: str) -> str:
    """The libpq form (``postgresql://``) that asyncpg.connect accepts."""
    return "postgresql://" + async_url(url)[len("postgresql+asyncpg://") :]


class Database:
    """A connection pool; use cases open one transaction per state change through it."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        cancel_grace_seconds: float = 60.0,
    ) -> None:
        self.url = async_url(url)
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No pre-ping: it costs a round trip per transaction. After a database restart
            # the first statement on a stale connection fails (503) and SQLAlchemy then
            # invalidates the whole pool, so clients see one error, not one per connection.
            pool_pre_ping=False,
            # Fail fast rather than hang when PostgreSQL is unreachable.
            connect_args={
                "timeout": 10,
                "command_timeout": 60,
                "server_settings": {
                    # The revoke grace is read by the database's own cancel function
                    # (cascades run in triggers, which cannot be handed a parameter).
                    "taskmill.cancel_grace_seconds": str(cancel_grace_seconds),
                    # Every statement here touches a handful of rows; JIT compiling one
                    # the planner over-estimates costs ~90 ms, 100 times its run time.
                    "jit": "off",
                },
            },
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed on success, rolled back on any exception.

        Driver errors leave here translated (see :func:`translate`): a lost or refused
        connection becomes :class:`Unavailable`.
        """
        try:
            async with self.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise translate(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise Unavailable(str(exc)) from exc

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
