"""Counts for ``GET /snapshot`` and the queue-depth gauges of ``GET /metrics``.

Live rows are counted on every call (they are few: every hot index is partial on them);
terminal rows, which can be millions, are counted by a separate query whose answer the
domain layer reuses for a while.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.lifecycle import NOT_TERMINAL_PREDICATE as _NOT_TERMINAL
from ..domain.lifecycle import TERMINAL_PREDICATE as _TERMINAL
from .common import Row


def _counts_sql(where: str) -> str:
    return f"""
SELECT status, type, group_name, count(*) AS n FROM tasks WHERE {where}
GROUP BY status, type, group_name
"""


_LIVE_SQL = text(_counts_sql(_NOT_TERMINAL))
_TERMINAL_SQL = text(_counts_sql(_TERMINAL))


async def live_counts(conn: AsyncConnection) -> list[Row]:
    """(status, type, group_name, n) over tasks that are not terminal."""
    return list((await conn.execute(_LIVE_SQL)).mappings())


async def terminal_counts(conn: AsyncConnection) -> list[Row]:
    """(status, type, group_name, n) over terminal tasks."""
    return list((await conn.execute(_TERMINAL_SQL)).mappings())


def _tag_sql(where: str) -> str:
    return f"""
SELECT tags ->> CAST(:key AS text) AS value, status, count(*) AS n,
    coalesce(sum(exp_read_bytes), 0) AS read_bytes,
    coalesce(sum(exp_write_bytes), 0) AS write_bytes,
    coalesce(sum(exp_net_rx_bytes), 0) AS net_rx_bytes,
    coalesce(sum(exp_net_tx_bytes), 0) AS net_tx_bytes
FROM tasks WHERE {where} AND tags ? CAST(:key AS text)
GROUP BY 1, 2
"""


_LIVE_TAG_SQL = text(_tag_sql(_NOT_TERMINAL))
_TERMINAL_TAG_SQL = text(_tag_sql(_TERMINAL))


async def live_tag_counts(conn: AsyncConnection, key: str) -> list[Row]:
    """(value, status, n, Σ expected_io) per value of tag ``key`` over non-terminal tasks."""
    return list((await conn.execute(_LIVE_TAG_SQL, {"key": key})).mappings())


async def terminal_tag_counts(conn: AsyncConnection, key: str) -> list[Row]:
    """(value, status, n, …) per value of tag ``key`` over terminal tasks."""
    return list((await conn.execute(_TERMINAL_TAG_SQL, {"key": key})).mappings())


async def depth(conn: AsyncConnection) -> dict[str, int]:
    """Tasks per non-terminal status (the queue-depth gauges)."""
    result = await conn.execute(
        text(f"SELECT status, count(*) AS n FROM tasks WHERE {_NOT_TERMINAL} GROUP BY status")
    )
    return {row.status: int(row.n) for row in result}
