"""Maintenance statements run by every replica's sweeper.

Each picks its rows with ``FOR UPDATE SKIP LOCKED`` in small batches, so two replicas
sweeping at once split the work instead of colliding, and no statement holds many locks.
Time is always the database's ``now()``: replicas' clocks never decide expiry. Each is
the lifecycle table's event of its name (expire, promote, ttl).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.lifecycle import LEASED_PREDICATE, UNSTARTED_PREDICATE, Event, events_sql, status_sql
from .common import notify_once, outbox

# An ended lease also frees a slot of its group's concurrency limit: wake waiting polls.
_NOTIFY_IF_LEASABLE = notify_once(
    "upd",
    "u.status = 'pending' OR EXISTS (SELECT 1 FROM groups g"
    " WHERE g.name = u.group_name AND g.max_concurrency IS NOT NULL)",
)

# A task that thereby ended says why, as the same end by other means would.
_EXPIRED_EXTRA = (
    "CASE WHEN e.name = 'task.failed' THEN jsonb_build_object('error', u.error)"
    " WHEN e.name IN ('task.cancelled', 'task.superseded') THEN jsonb_strip_nulls("
    "jsonb_build_object('reason', u.cancel_reason, 'superseded_by', u.superseded_by))"
    " ELSE '{}'::jsonb END"
)

# A lease past its expiry (for a revoked one: at the latest its cancel_deadline). The
# token is cleared, so the old holder's late calls answer 410.
_EXPIRE_LEASES_SQL = text(
    f"""
WITH due AS (
    SELECT id FROM tasks
    WHERE {LEASED_PREDICATE} AND lease_expires_at <= now()
    ORDER BY lease_expires_at LIMIT :batch
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE tasks t SET
        status = {status_sql(Event.EXPIRE)},
        error = CASE WHEN t.status = 'running'
            THEN jsonb_build_object('message', 'lease expired', 'worker', t.lease_worker)
            ELSE t.error END,
        lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    FROM due WHERE t.id = due.id
    RETURNING t.*
), ev AS ({
        outbox(
            "upd",
            events_sql(Event.EXPIRE),
            _EXPIRED_EXTRA,
        )
    })
SELECT count(*) AS n, {_NOTIFY_IF_LEASABLE} AS notified FROM upd
"""
)

# Scheduled tasks whose run_after has come become leasable (or paused with their group).
_PROMOTE_SQL = text(
    f"""
WITH due AS (
    SELECT id FROM tasks WHERE status = 'scheduled' AND run_after <= now()
    ORDER BY run_after LIMIT :batch
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE tasks t SET status = {status_sql(Event.PROMOTE)}, updated_at = now()
    FROM due WHERE t.id = due.id
    RETURNING t.*
), ev AS ({outbox("upd", events_sql(Event.PROMOTE))})
SELECT count(*) AS n, {notify_once("upd", "u.status = 'pending'")} AS notified FROM upd
"""
)

# ttl_seconds: a task not started within its TTL expires.
_EXPIRE_TTL_SQL = text(
    f"""
WITH due AS (
    SELECT id FROM tasks
    WHERE ttl_deadline IS NOT NULL AND {UNSTARTED_PREDICATE} AND ttl_deadline <= now()
      AND started_at IS NULL
    ORDER BY ttl_deadline LIMIT :batch
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE tasks t SET status = {status_sql(Event.TTL)}, updated_at = now()
    FROM due WHERE t.id = due.id
    RETURNING t.*
), ev AS ({outbox("upd", events_sql(Event.TTL))})
SELECT count(*) AS n FROM upd
"""
)


async def expire_leases(conn: AsyncConnection, batch: int) -> int:
    """Expire up to ``batch`` leases past their deadline; return how many."""
    return int((await conn.execute(_EXPIRE_LEASES_SQL, {"batch": batch})).scalar_one())


async def promote_scheduled(conn: AsyncConnection, batch: int) -> int:
    """Make up to ``batch`` due scheduled tasks leasable; return how many."""
    return int((await conn.execute(_PROMOTE_SQL, {"batch": batch})).scalar_one())


async def expire_ttl(conn: AsyncConnection, batch: int) -> int:
    """Expire up to ``batch`` tasks whose TTL ran out before they started."""
    return int((await conn.execute(_EXPIRE_TTL_SQL, {"batch": batch})).scalar_one())
