"""Group queries: limits and pause state."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .common import WORK_CHANNEL, Row


async def lock_group(conn: AsyncConnection, name: str) -> Row | None:
    """The group's row, locked for update (None when it was never configured)."""
    result = await conn.execute(
        text("SELECT * FROM groups WHERE name = :name FOR UPDATE"), {"name": name}
    )
    return result.mappings().first()


async def upsert_group(
    conn: AsyncConnection, name: str, max_concurrency: int | None, paused: bool
) -> None:
    """Create or overwrite the group's settings."""
    await conn.execute(
        text(
            """
INSERT INTO groups (name, max_concurrency, paused) VALUES (:name, :max, :paused)
ON CONFLICT (name) DO UPDATE SET max_concurrency = excluded.max_concurrency,
    paused = excluded.paused, updated_at = now()
"""
        ),
        {"name": name, "max": max_concurrency, "paused": paused},
    )


async def notify_work(conn: AsyncConnection) -> None:
    """Wake the long polls of every replica once this transaction commits."""
    await conn.execute(text(f"SELECT pg_notify('{WORK_CHANNEL}', '')"))


async def set_tasks_paused(conn: AsyncConnection, name: str, paused: bool) -> int:
    """Move the group's leasable tasks to ``paused`` or back; write the group event."""
    old, new = ("pending", "paused") if paused else ("paused", "pending")
    event = "group.paused" if paused else "group.resumed"
    result = await conn.execute(
        text(
            f"""
WITH upd AS (
    UPDATE tasks SET status = :new, updated_at = now()
    WHERE group_name = :name AND status = :old
    RETURNING id
), ev AS (
    INSERT INTO events (event, group_name, data)
    VALUES (:event, :name, jsonb_build_object('tasks', (SELECT count(*) FROM upd)))
)
SELECT count(*) AS n,
    (SELECT 1 FROM (SELECT pg_notify('{WORK_CHANNEL}', '') WHERE :new = 'pending') x) AS nt
FROM upd
"""
        ),
        {"name": name, "old": old, "new": new, "event": event},
    )
    return int(result.scalar_one())


_STATS = """
    count(*) FILTER (WHERE t.status IN ('running', 'cancelling')) AS running,
    count(*) FILTER (WHERE t.status IN ('pending', 'paused')) AS pending
"""


async def list_groups(conn: AsyncConnection, name: str | None = None) -> list[Row]:
    """Configured groups and groups that have live tasks, with running/pending counts."""
    result = await conn.execute(
        text(
            f"""
WITH active AS (
    SELECT t.group_name AS name, {_STATS}
    FROM tasks t
    WHERE t.group_name IS NOT NULL
      AND t.status IN ('pending', 'paused', 'running', 'cancelling')
      AND (CAST(:name AS text) IS NULL OR t.group_name = :name)
    GROUP BY t.group_name
)
SELECT coalesce(g.name, a.name) AS name, g.max_concurrency,
    coalesce(g.paused, false) AS paused,
    coalesce(a.running, 0) AS running, coalesce(a.pending, 0) AS pending
FROM groups g FULL JOIN active a ON a.name = g.name
WHERE CAST(:name AS text) IS NULL OR coalesce(g.name, a.name) = :name
ORDER BY 1
"""
        ),
        {"name": name},
    )
    return list(result.mappings())
