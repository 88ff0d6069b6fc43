"""Supersede (latest value wins) and cancellation: the statements behind SPEC §4.

The rest of the tree follows by itself: triggers (migration 0002) cascade a revoked or
ended task to its descendants, keep parents' child counters, and release a blocked
successor once its predecessor and that predecessor's whole subtree are terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import LIVE_PREDICATE, TERMINAL_PREDICATE
from .tasks import EVENT_DATA, Row

# Lock the live holder of a key and retire it in one statement: a running holder's lease
# is revoked (cancelling: its worker runs on_cancel, then acknowledges), any other holder
# becomes terminal `superseded` at once. FOR UPDATE makes concurrent supersedes of one key
# queue up behind each other; the partial unique index keeps first inserts safe.
_RETIRE_HOLDER_SQL = text(
    f"""
WITH h AS (
    SELECT id, status, seq, blocked_on, state_from, started_at FROM tasks
    WHERE type = :type AND dedup_key = :key AND {LIVE_PREDICATE}
    FOR UPDATE
), upd AS (
    UPDATE tasks t SET
        status = CASE WHEN h.status = 'running' THEN 'cancelling' ELSE 'superseded' END,
        cancel_reason = 'superseded', superseded_by = :new_id,
        finished_at = CASE WHEN h.status = 'running' THEN NULL ELSE now() END,
        updated_at = now()
    FROM h WHERE t.id = h.id
    RETURNING t.*, h.status AS old_status, h.seq AS old_seq, h.blocked_on AS old_blocked_on,
        h.state_from AS old_state_from, h.started_at IS NOT NULL AS old_started
), ev AS (
    INSERT INTO events (event, task_id, type, group_name, tags, data)
    SELECT 'task.superseded', u.id, u.type, u.group_name, u.tags, {EVENT_DATA.format(a="u")}
        || jsonb_build_object('superseded_by', u.superseded_by, 'previous_status', u.old_status)
    FROM upd u
)
SELECT * FROM upd
"""
)


async def retire_holder(conn: AsyncConnection, task_type: str, key: str, new_id: str) -> Row | None:
    """Supersede the live holder of (type, key) by ``new_id``; None if the key is free."""
    result = await conn.execute(
        _RETIRE_HOLDER_SQL, {"type": task_type, "key": key, "new_id": new_id}
    )
    return result.mappings().first()


async def unblock_for(conn: AsyncConnection, task_id: str) -> int:
    """Release tasks blocked on ``task_id`` (or its ancestors) whose wait is over."""
    result = await conn.execute(text("SELECT taskmill_unblock_for(:id)"), {"id": task_id})
    return int(result.scalar_one())


async def unblock_stale(conn: AsyncConnection, batch: int) -> int:
    """Safety net for the sweeper: blocked tasks whose predecessor already ended.

    A task inserted blocked while its predecessor was finishing in a concurrent
    transaction can miss that transaction's release; this finds it.
    """
    result = await conn.execute(
        text(
            f"""
SELECT coalesce(sum(taskmill_unblock_for(b.blocked_on)), 0) FROM (
    SELECT DISTINCT t.blocked_on FROM tasks t JOIN tasks p ON p.id = t.blocked_on
    WHERE t.status = 'blocked' AND p.{TERMINAL_PREDICATE}
    LIMIT :batch
) b
"""
        ),
        {"batch": batch},
    )
    return int(result.scalar_one())


async def lock_parents(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Row]:
    """Lock the would-be parents of new children (their counters are about to change)."""
    result = await conn.execute(
        text(
            "SELECT id, status, tags, phase, CAST(lease_token AS text) AS lease_token"
            " FROM tasks WHERE id = ANY(CAST(:ids AS text[]))"
            " ORDER BY id FOR NO KEY UPDATE"
        ),
        {"ids": list(ids)},
    )
    return {row["id"]: row for row in result.mappings()}


_CANCEL_SQL = text(
    f"""
WITH upd AS (
    UPDATE tasks t SET
        status = CASE WHEN t.status = 'running' THEN 'cancelling' ELSE 'cancelled' END,
        cancel_reason = 'cancelled',
        finished_at = CASE WHEN t.status = 'running' THEN NULL ELSE now() END,
        updated_at = now()
    WHERE t.id = ANY(CAST(:ids AS text[])) AND t.{LIVE_PREDICATE}
    RETURNING t.*
), ev AS (
    INSERT INTO events (event, task_id, type, group_name, tags, data)
    SELECT CASE WHEN u.status = 'cancelling' THEN 'task.cancelling' ELSE 'task.cancelled' END,
        u.id, u.type, u.group_name, u.tags,
        {EVENT_DATA.format(a="u")} || jsonb_build_object('reason', 'cancelled')
    FROM upd u
)
SELECT * FROM upd
"""
)


async def cancel(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Row]:
    """Cancel live tasks: unleased ones end at once, leased ones are revoked."""
    result = await conn.execute(_CANCEL_SQL, {"ids": list(ids)})
    return {row["id"]: row for row in result.mappings()}


_ACK_SQL = text(
    f"""
WITH upd AS (
    UPDATE tasks t SET
        status = CASE WHEN t.cancel_reason = 'superseded' THEN 'superseded' ELSE 'cancelled' END,
        finished_at = now(), updated_at = now(), lease_expires_at = NULL
    WHERE t.id = :id AND t.lease_token = CAST(:token AS uuid) AND t.status = 'cancelling'
    RETURNING t.*
), ev AS (
    INSERT INTO events (event, task_id, type, group_name, tags, data)
    SELECT 'task.' || u.status, u.id, u.type, u.group_name, u.tags,
        {EVENT_DATA.format(a="u")}
        || jsonb_strip_nulls(jsonb_build_object('superseded_by', u.superseded_by,
            'acknowledged', true))
    FROM upd u
)
SELECT * FROM upd
"""
)


async def acknowledge_cancel(conn: AsyncConnection, task_id: str, token: str) -> Row | None:
    """The worker ran on_cancel: the revoked task becomes terminal."""
    result = await conn.execute(_ACK_SQL, {"id": task_id, "token": token})
    return result.mappings().first()
