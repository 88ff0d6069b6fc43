"""Trees and keys: cancel, force cancel, supersede, and the parents of new children.

A cancel is the lifecycle table's ``cancel`` event, run by ``taskmill_cancel()`` in the
database (app/store/sql/0005_lifecycle.sql): the same function serves a producer's cancel,
a supersede and the triggers' cascades, so the three can never disagree. The rest of the
tree follows by itself: triggers cascade to descendants, keep the parents' counters, and
release blocked successors once the last cancelling task of an older generation ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.lifecycle import Reason
from .common import Row

_SUPERSEDE_SQL = text("SELECT * FROM taskmill_supersede(:type, :key, :new_id)")


async def retire_holder(conn: AsyncConnection, task_type: str, key: str, new_id: str) -> Row | None:
    """Supersede the live holder of (type, key) by ``new_id``: taskmill_supersede() queues
    on the key's lock, takes the locks in the order that cannot deadlock with a worker's
    acknowledgement, and cancels the holder (reason superseded). Returns the holder as it
    was before, or None when the key is free (then insert; a second call is cheap: the
    key's lock is already held)."""
    result = await conn.execute(_SUPERSEDE_SQL, {"type": task_type, "key": key, "new_id": new_id})
    return result.mappings().first()


_CANCEL_SQL = text(
    "SELECT * FROM taskmill_cancel(CAST(:ids AS text[]), CAST(:reason AS text),"
    " CAST(:by AS text), false)"
)


async def cancel(
    conn: AsyncConnection,
    ids: Sequence[str],
    reason: Reason = Reason.CANCELLED,
    superseded_by: str | None = None,
) -> dict[str, Row]:
    """The cancel event on the live tasks named; their rows after it, by id."""
    result = await conn.execute(
        _CANCEL_SQL, {"ids": list(ids), "reason": str(reason), "by": superseded_by}
    )
    return {row["id"]: row for row in result.mappings()}


async def force(conn: AsyncConnection, task_id: str) -> dict[str, Row]:
    """End the task and every descendant not yet over, at once; the rows it ended."""
    result = await conn.execute(text("SELECT * FROM taskmill_force(:id)"), {"id": task_id})
    return {row["id"]: row for row in result.mappings()}


async def lock_parents(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Row]:
    """Lock the would-be parents of new children (their counters are about to change)."""
    result = await conn.execute(
        text(
            "SELECT id, status, tags, phase, cancel_reason, superseded_by,"
            " CAST(lease_token AS text) AS lease_token"
            " FROM tasks WHERE id = ANY(CAST(:ids AS text[]))"
            " ORDER BY id FOR NO KEY UPDATE"
        ),
        {"ids": list(ids)},
    )
    return {row["id"]: row for row in result.mappings()}
