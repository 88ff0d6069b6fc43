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

from ..domain.lifecycle import LIVE_PREDICATE, Reason
from .common import Row


async def lock_key(conn: AsyncConnection, task_type: str, key: str) -> None:
    """Queue on the dedup key until this transaction ends.

    Supersedes of one key take turns on this lock, so each finds the holder the previous
    one left, in one round; without it, concurrent supersedes of a fresh key kept losing
    the insert to each other. A transaction-scoped advisory lock: nothing to release.
    """
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('taskmill.key.' || :k, 0))"),
        {"k": f"{task_type}/{key}"},
    )


async def lock_predecessors(conn: AsyncConnection, task_type: str, key: str) -> None:
    """Lock (FOR SHARE) the cancelling tasks that will block the key's next generation.

    Taken before the holder: a worker acknowledging one of them locks it, then the
    blocked holder (to release it). Locking in that same order here, rather than holder
    first, means a supersede queues behind the acknowledgement instead of deadlocking
    with it.
    """
    await conn.execute(
        text(
            "SELECT 1 FROM tasks WHERE status = 'cancelling'"
            " AND (fence_key = :fence OR (type = :type AND dedup_key = :key))"
            " ORDER BY id FOR SHARE"
        ),
        {"fence": f"{task_type}/{key}", "type": task_type, "key": key},
    )


_HOLDER_SQL = text(
    f"""
SELECT id, status, phase, seq, state_from, lease_expires_at IS NOT NULL AS leased,
    state IS NOT NULL AND state <> '{{}}'::jsonb AS has_state
FROM tasks WHERE type = :type AND dedup_key = :key AND {LIVE_PREDICATE}
FOR UPDATE
"""
)


async def lock_holder(conn: AsyncConnection, task_type: str, key: str) -> Row | None:
    """The live task holding (type, key), locked; None when the key is free."""
    result = await conn.execute(_HOLDER_SQL, {"type": task_type, "key": key})
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
