"""Retention: delete old terminal tasks (with their events) and old events, in batches.

Each call deletes at most ``batch`` rows in one short statement; rows are picked with
``FOR UPDATE SKIP LOCKED``, so replicas pruning at once split the work and nothing waits
on a row another transaction holds. Time is the database's ``now()``.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.lifecycle import TERMINAL_PREDICATE

# A terminal task is kept while its parent is still live (the parent's finalize may want
# it) or while a blocked task waits on it. Its events go with it.
_PRUNE_TASKS_SQL = text(
    f"""
WITH doomed AS (
    SELECT t.id FROM tasks t
    WHERE t.{TERMINAL_PREDICATE}
      AND t.finished_at < now() - make_interval(secs => :age)
      AND (t.parent_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM tasks p WHERE p.id = t.parent_id AND NOT p.{TERMINAL_PREDICATE}))
      AND NOT EXISTS (SELECT 1 FROM tasks b WHERE b.blocked_on = t.id AND b.status = 'blocked')
    ORDER BY t.finished_at
    LIMIT :batch
    FOR UPDATE OF t SKIP LOCKED
), ev AS (
    DELETE FROM events e USING doomed d WHERE e.task_id = d.id
)
DELETE FROM tasks t USING doomed d WHERE t.id = d.id
RETURNING t.id
"""
)

_PRUNE_EVENTS_SQL = text(
    """
WITH doomed AS (
    SELECT id FROM events
    WHERE at < now() - make_interval(secs => :age)
    ORDER BY at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
DELETE FROM events e USING doomed d WHERE e.id = d.id
RETURNING e.id
"""
)


async def prune_tasks(conn: AsyncConnection, older_than_seconds: float, batch: int) -> int:
    """Delete up to ``batch`` terminal tasks finished before the window; return how many."""
    result = await conn.execute(_PRUNE_TASKS_SQL, {"age": older_than_seconds, "batch": batch})
    return len(result.all())


async def prune_events(conn: AsyncConnection, older_than_seconds: float, batch: int) -> int:
    """Delete up to ``batch`` events older than the window; return how many."""
    result = await conn.execute(_PRUNE_EVENTS_SQL, {"age": older_than_seconds, "batch": batch})
    return len(result.all())
