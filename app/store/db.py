"""Engine, transactions and the URL conventions of the store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .common import Row
from .errors import DRIVER_ERRORS, Retryable, Unavailable, translate, translate_driver

#: What the hot paths run on: the pooled connection's asyncpg connection itself.
Driver: TypeAlias = asyncpg.Connection

#: Either kind of connection the store's statements run on.
AnyConnection: TypeAlias = AsyncConnection | Driver

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


class Statement:
    """One SQL text, runnable both ways: in a SQLAlchemy transaction, and on a driver
    connection outside any transaction (see :meth:`Database.autocommit`).

    The text is compiled once to asyncpg's numbered parameters (``:name`` becomes ``$n``,
    a repeated name the same ``$n``), so a call on the driver costs only asyncpg's own
    work: its statement cache prepares the text once per connection.
    """

    __slots__ = ("_names", "_sql", "clause")

    def __init__(self, clause: TextClause) -> None:
        self.clause = clause
        compiled = clause.compile(dialect=_DIALECT)
        self._sql = compiled.string
        self._names = tuple(compiled.positiontup or ())

    async def fetch(self, conn: Driver, params: Mapping[str, Any]) -> list[asyncpg.Record]:
        """Run on ``conn``; every row."""
        rows: list[asyncpg.Record] = await conn.fetch(self._sql, *(params[n] for n in self._names))
        return rows

    async def rows(self, conn: AnyConnection, params: Mapping[str, Any]) -> Sequence[Row]:
        """Run on either kind of connection; every row, addressed by column name."""
        if isinstance(conn, AsyncConnection):
            return list((await conn.execute(self.clause, params)).mappings())
        return await self.fetch(conn, params)

    async def first(self, conn: AnyConnection, params: Mapping[str, Any]) -> Row | None:
        """Run on either kind of connection; the first row, if any."""
        rows = await self.rows(conn, params)
        return rows[0] if rows else None


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
                    # The service's statements are prepared once per connection and
                    # run thousands of times. PostgreSQL re-plans a statement for each
                    # call until a generic plan looks no costlier than the custom ones,
                    # and for the claim it never does: 3-4 ms of planning per claim,
                    # against 1 ms of execution. Generic plans keep the claim's index
                    # scan (tests/store/test_plans.py). Filtered reads opt out.
                    "plan_cache_mode": "force_generic_plan",
                },
            },
        )

        # The base class of the errors the asyncpg dialect raises itself (see autocommit).
        self._dbapi_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error

    @asynccontextmanager
    async def transaction(self, *, custom_plans: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed on success, rolled back on any exception.

        ``custom_plans``: plan each statement for its parameters (PostgreSQL's own
        choice), for the filtered reads whose best plan depends on the values (a rare
        tag or a common one). Every other statement runs a generic plan (see
        ``plan_cache_mode`` above).

        Driver errors leave here translated (see :func:`translate`): a lost or refused
        connection becomes :class:`Unavailable`.
        """
        try:
            async with self.engine.begin() as conn:
                if custom_plans:
                    await conn.execute(text("SET LOCAL plan_cache_mode = auto"))
                yield conn
        except DBAPIError as exc:
            raise translate(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise Unavailable(str(exc)) from exc

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Driver]:
        """A pooled connection outside any transaction: each statement commits on its own.

        For the use cases that are one statement (a plain submit, a claim, a completion,
        a heartbeat): one round trip, where ``transaction()`` costs three (BEGIN, the
        statement, COMMIT) plus SQLAlchemy's own work per call. The statement is atomic
        by itself, so nothing is lost but the round trips. Errors leave translated, as
        from ``transaction()``.
        """
        try:
            # Straight from the pool: an engine Connection around it would cost 0.1 ms of
            # CPU per checkout, a tenth of a request. No transaction is ever begun on it,
            # so returning it to the pool issues no ROLLBACK either.
            pooled = await self.engine.raw_connection()
        except DBAPIError as exc:
            raise translate(exc) from exc
        except self._dbapi_error as exc:
            # raw_connection() hands on the dialect's own error, unwrapped: a refused
            # connection ("the database system is shutting down", ...) is the driver's.
            cause = exc.__cause__
            if isinstance(cause, DRIVER_ERRORS):
                raise translate_driver(cause) from exc
            raise Unavailable(str(exc)) from exc
        except (OSError, TimeoutError) as exc:
            raise Unavailable(str(exc)) from exc
        try:
            yield pooled.driver_connection
        except DRIVER_ERRORS as exc:
            error = translate_driver(exc)
            if isinstance(error, Unavailable) and not isinstance(error, Retryable):
                pooled.invalidate(exc)  # the connection is gone or going: never reuse it
            raise error from exc
        except (OSError, TimeoutError) as exc:
            pooled.invalidate(exc)
            raise Unavailable(str(exc)) from exc
        finally:
            # Back to the pool, unless invalidate() did that already: a second check-in
            # would hand one connection to two callers at once.
            if pooled.is_valid:
                pooled.close()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
