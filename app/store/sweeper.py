"""Maintenance statements run by every replica's sweeper.

Each picks its rows with ``FOR UPDATE SKIP LOCKED`` in small batches, so two replicas
sweeping at once split the work instead of colliding, and no statement holds many locks.
Time is always the database's ``now()``: replicas' clocks never decide expiry.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import LEASED_PREDICATE, UNSTARTED_PREDICATE
from .tasks import EVENT_DATA, REQUEUE_STATUS, WORK_CHANNEL

_NOTIFY_IF_PENDING = f"""(SELECT 1 FROM (SELECT pg_notify('{WORK_CHANNEL}', '') FROM upd
    WHERE upd.status = 'pending') n LIMIT 1)"""

# An ended lease also frees a slot of its group's concurrency limit: wake waiting polls.
_NOTIFY_IF_LEASABLE = f"""(SELECT 1 FROM (SELECT pg_notify('{WORK_CHANNEL}', '') FROM upd
    WHERE upd.status = 'pending' OR EXISTS (SELECT 1 FROM groups g
        WHERE g.name = upd.group_name AND g.max_concurrency IS NOT NULL)) n LIMIT 1)"""

# A lease past its expiry: a cancelling task becomes terminal (its cancel is complete);
# a running one goes back to the queue with the attempt counted, or fails when exhausted.
# The token is cleared so the old holder's late calls answer 410.
_EXPIRE_LEASES_SQL = text(
    f"""
WITH due AS (
    SELECT id FROM tasks
    WHERE {LEASED_PREDICATE} AND lease_expires_at <= now()
    ORDER BY lease_expires_at LIMIT :batch
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE tasks t SET
        status = CASE
            WHEN t.status = 'cancelling' THEN
                CASE WHEN t.cancel_reason = 'superseded' THEN 'superseded' ELSE 'cancelled' END
            WHEN t.attempt >= t.max_attempts THEN 'failed'
            ELSE {REQUEUE_STATUS} END,
        error = CASE WHEN t.status = 'running'
            THEN jsonb_build_object('message', 'lease expired', 'worker', t.lease_worker)
            ELSE t.error END,
        finished_at = CASE WHEN t.status = 'cancelling' OR t.attempt >= t.max_attempts
            THEN now() END,
        lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    FROM due WHERE t.id = due.id
    RETURNING t.*
), ev AS (
    -- lease.expired for each; a task that thereby ended also gets its terminal event
    -- (task.failed when attempts are used up, task.cancelled / task.superseded when a
    -- revoked lease ran out before the worker acknowledged).
    INSERT INTO events (event, task_id, type, group_name, tags, data)
    SELECT e.event, u.id, u.type, u.group_name, u.tags, {EVENT_DATA.format(a="u")}
        || CASE WHEN e.event = 'task.failed' THEN jsonb_build_object('error', u.error)
                ELSE '{{}}'::jsonb END
    FROM upd u CROSS JOIN LATERAL (VALUES (1, 'lease.expired'), (2, 'task.' || u.status))
        AS e(ord, event)
    WHERE e.ord = 1 OR u.status IN ('failed', 'cancelled', 'superseded')
    ORDER BY u.id, e.ord
)
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
    UPDATE tasks t SET status = {REQUEUE_STATUS}, updated_at = now()
    FROM due WHERE t.id = due.id
    RETURNING t.*
)
SELECT count(*) AS n, {_NOTIFY_IF_PENDING} AS notified FROM upd
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
    UPDATE tasks t SET status = 'expired', finished_at = now(), updated_at = now()
    FROM due WHERE t.id = due.id
    RETURNING t.*
), ev AS (
    INSERT INTO events (event, task_id, type, group_name, tags, data)
    SELECT 'task.expired', u.id, u.type, u.group_name, u.tags, {EVENT_DATA.format(a="u")}
    FROM upd u
)
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
