"""Lease statements: claim, heartbeat, state, complete, fail, release, acknowledge a cancel.

Every call on a lease is fenced: it names the task by primary key and must match the
lease token and a live lease (``lease_expires_at`` in the future by the *database's*
clock). A call that matches nothing changes nothing; the caller then asks
``lease_standing`` why, to answer 404/409/410. Each status change is the lifecycle
table's event of the same name (app/domain/lifecycle.py): its ``status =``, ``phase =``
and announced events are written from the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.lifecycle import (
    CANCEL_CLAIMABLE_PREDICATE,
    CHILD_FAILED,
    CHILDREN_LIVE,
    LEASED_PREDICATE,
    RETRY,
    Event,
    events_sql,
    phase_sql,
    status_sql,
)
from .common import Row, dumps, notify_once, outbox
from .db import AnyConnection, Statement

# Groups that may not receive a lease now: paused, or at their concurrency limit.
# Evaluated once per claim (an InitPlan), so the claim stays an index scan on
# ix_tasks_claim that simply skips those groups: no head-of-line blocking.
_BLOCKED_GROUPS = f"""ARRAY(
    SELECT g.name FROM groups g
    WHERE g.paused OR (g.max_concurrency IS NOT NULL AND g.max_concurrency <= (
        SELECT count(*) FROM tasks r WHERE r.group_name = g.name AND r.{LEASED_PREDICATE}
    ))
)"""

# A task not yet started may still be leased only before its TTL deadline.
_TTL_OPEN = "({t}.ttl_deadline IS NULL OR {t}.started_at IS NOT NULL OR {t}.ttl_deadline > now())"

_GRANT = f"""
    UPDATE tasks t SET status = {status_sql(Event.LEASE)},
        -- a finalize lease is the same attempt's second phase, not a new attempt
        attempt = t.attempt + CASE WHEN t.phase = 'execute' THEN 1 ELSE 0 END,
        lease_token = gen_random_uuid(), lease_worker = :worker, lease_seconds = :secs,
        lease_expires_at = now() + make_interval(secs => :secs),
        started_at = coalesce(t.started_at, now()), updated_at = now()
"""

# A cancel-phase lease (lifecycle: lease, cancelling -> cancelling) runs the on_cancel of
# a task whose execute phase had ended; like a revoked lease, it ends by the grace.
_GRANT_CANCEL = """
    UPDATE tasks t SET lease_token = gen_random_uuid(), lease_worker = :worker,
        lease_seconds = :secs, cancel_deadline = now() + taskmill_cancel_grace(),
        lease_expires_at = now() + least(make_interval(secs => :secs), taskmill_cancel_grace()),
        updated_at = now()
"""

_LEASED_EXTRA = "jsonb_build_object('worker', u.lease_worker)"

# The newest non-empty state map up the chain of tasks this one replaced (SPEC §4: state
# handoff). A supersede links only predecessors that ran or hold state, so the walk is short.
_PREVIOUS_STATE = """LEFT JOIN LATERAL (
    WITH RECURSIVE chain(state, state_from, depth) AS (
        SELECT p.state, p.state_from, 1 FROM tasks p WHERE p.id = u.state_from
        UNION ALL
        SELECT q.state, q.state_from, c.depth + 1 FROM chain c JOIN tasks q ON q.id = c.state_from
        WHERE (c.state IS NULL OR c.state = '{}'::jsonb) AND c.depth < 100
    )
    SELECT chain.state FROM chain WHERE chain.state <> '{}'::jsonb ORDER BY chain.depth LIMIT 1
) ps ON u.state_from IS NOT NULL"""


def _claim_sql(types: bool, groups: bool) -> Statement:
    filters = ""
    if types:
        filters += " AND c.type = ANY(CAST(:types AS text[]))"
    if groups:
        filters += " AND c.group_name = ANY(CAST(:groups AS text[]))"
    # One statement, one round trip. First the on_cancel runs waiting for a lease (they
    # hold back a replacement; never held back by a group's pause or limit), then pending
    # tasks in lease order (SKIP LOCKED, so concurrent claimers on any replica take
    # disjoint rows): those outside concurrency-limited groups are granted at once, the
    # limited ones handed back still locked (task columns NULL) for the caller to admit
    # under the group's lock.
    return Statement(
        text(
            f"""
WITH hook AS MATERIALIZED (
    SELECT c.id FROM tasks c
    WHERE c.{CANCEL_CLAIMABLE_PREDICATE}{filters}
    ORDER BY c.priority, c.seq
    LIMIT :n
    FOR UPDATE OF c SKIP LOCKED
), hooks AS (
    {_GRANT_CANCEL}
    FROM hook WHERE t.id = hook.id
    RETURNING t.*
), cand AS MATERIALIZED (
    SELECT c.id, c.group_name, c.priority, c.seq,
        (SELECT g.max_concurrency FROM groups g WHERE g.name = c.group_name) AS group_limit
    FROM tasks c
    WHERE c.status = 'pending'{filters}
      AND {_TTL_OPEN.format(t="c")}
      AND (c.group_name IS NULL OR c.group_name <> ALL({_BLOCKED_GROUPS}))
    ORDER BY c.priority, c.seq
    LIMIT :n
    FOR UPDATE OF c SKIP LOCKED
), picked AS (
    -- What the cancel-phase runs leave of n. (A LIMIT computed from them would hide n
    -- from the planner, which then costs the scan as if it read a tenth of the queue.)
    SELECT * FROM (
        SELECT cand.*, row_number() OVER (ORDER BY cand.priority, cand.seq) AS rank
        FROM cand
    ) r WHERE r.rank <= :n - (SELECT count(*) FROM hook)
), upd AS (
    {_GRANT}
    FROM picked WHERE t.id = picked.id AND picked.group_limit IS NULL
    RETURNING t.*
), granted AS (
    SELECT * FROM hooks UNION ALL SELECT * FROM upd
), ev AS ({outbox("granted", events_sql(Event.LEASE), _LEASED_EXTRA)})
SELECT u.id AS cand_id, u.group_name AS cand_group, CAST(NULL AS int) AS group_limit,
    u.*, ps.state AS previous_state
FROM hooks u {_PREVIOUS_STATE}
UNION ALL
SELECT picked.id, picked.group_name, picked.group_limit, u.*, ps.state
FROM picked LEFT JOIN upd u ON u.id = picked.id {_PREVIOUS_STATE}
"""
        )
    )


_CLAIM_SQL = {(a, b): _claim_sql(a, b) for a in (False, True) for b in (False, True)}


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim statement did: rows granted, and limited-group rows still to admit."""

    granted: list[Row]
    limited: list[tuple[str, str, int]]  # (task id, group, max_concurrency), lease order


async def claim(
    conn: AnyConnection,
    *,
    worker: str,
    n: int,
    lease_seconds: float,
    types: Sequence[str] | None,
    groups: Sequence[str] | None,
) -> Claim:
    """Lease up to ``n`` tasks: cancel-phase runs first, then pending tasks in priority,
    then enqueue order.

    On a driver connection outside a transaction (one round trip) the limited-group
    candidates come back unlocked: :func:`grant` re-checks them under the groups' locks.
    """
    params: dict[str, Any] = {"worker": worker, "n": n, "secs": lease_seconds}
    if types:
        params["types"] = list(types)
    if groups:
        params["groups"] = list(groups)
    granted: list[Row] = []
    limited: list[tuple[str, str, int]] = []
    for row in await _CLAIM_SQL[(bool(types), bool(groups))].rows(conn, params):
        if row["id"] is not None:
            granted.append(row)
        else:
            limited.append((row["cand_id"], row["cand_group"], row["group_limit"]))
    return Claim(granted, limited)


async def lock_groups_and_count(conn: AsyncConnection, names: Sequence[str]) -> dict[str, int]:
    """Serialise admission into concurrency-limited groups; return each group's free slots.

    A transaction-scoped advisory lock per group (taken in name order, so two claimers
    never deadlock) makes count-then-grant atomic across replicas. Row locks on ``groups``
    would do too, but would deadlock with ``PUT /groups`` pausing those same tasks.
    """
    await conn.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended('taskmill.group.' || n, 0))"
            " FROM (SELECT n FROM unnest(CAST(:names AS text[])) AS n ORDER BY n) s"
        ),
        {"names": sorted(set(names))},
    )
    result = await conn.execute(
        text(
            f"""
SELECT g.name, g.max_concurrency - (SELECT count(*) FROM tasks r
    WHERE r.group_name = g.name AND r.{LEASED_PREDICATE}) AS free
FROM groups g WHERE g.name = ANY(CAST(:names AS text[])) AND g.max_concurrency IS NOT NULL
"""
        ),
        {"names": list(names)},
    )
    return {row.name: int(row.free) for row in result}


_GRANT_IDS_SQL = text(
    f"""
WITH upd AS (
    {_GRANT}
    -- Re-checked: the claim that found these may have run outside a transaction, so
    -- they were not locked since (another claimer, a pause or the TTL may have come).
    WHERE t.id = ANY(CAST(:ids AS text[])) AND t.status = 'pending'
      AND {_TTL_OPEN.format(t="t")}
    RETURNING t.*
), ev AS ({outbox("upd", events_sql(Event.LEASE), _LEASED_EXTRA)})
SELECT u.*, ps.state AS previous_state FROM upd u {_PREVIOUS_STATE}
ORDER BY u.priority, u.seq
"""
)


async def grant(
    conn: AsyncConnection, ids: Sequence[str], *, worker: str, lease_seconds: float
) -> list[Row]:
    """Lease those of the given tasks that are still pending (under the groups' locks)."""
    if not ids:
        return []
    result = await conn.execute(
        _GRANT_IDS_SQL, {"ids": list(ids), "worker": worker, "secs": lease_seconds}
    )
    return list(result.mappings())


# ---------------------------------------------------------------------------------------
# Calls on a held lease.

_HELD = "t.id = :id AND t.lease_token = CAST(:token AS uuid) AND t.lease_expires_at > now()"

# A lease that ends frees a slot of its group's concurrency limit: wake the long polls
# that may be waiting for it.
_SLOT_FREED = """EXISTS (SELECT 1 FROM groups g
    WHERE g.name = u.group_name AND g.max_concurrency IS NOT NULL)"""

_NOTIFY_LEASABLE = notify_once("upd", f"u.status = 'pending' OR {_SLOT_FREED}")


_STANDING_SQL = Statement(
    text(
        "SELECT id, status, phase, cancel_reason, superseded_by,"
        " CAST(lease_token AS text) AS lease_token,"
        " coalesce(lease_expires_at > now(), false) AS unexpired FROM tasks WHERE id = :id"
    )
)


async def lease_standing(conn: AnyConnection, task_id: str) -> Row | None:
    """The task's lease columns, to explain why a fenced call matched nothing."""
    return await _STANDING_SQL.first(conn, {"id": task_id})


_PROGRESS_EXTRA = "jsonb_build_object('progress', u.progress)"

# A revoked lease never outlives its cancel_deadline, whatever the heartbeats ask
# (least() ignores the NULL deadline of a lease that was not revoked).
_HEARTBEAT_SQL = Statement(
    text(
        f"""
WITH upd AS (
    UPDATE tasks t SET
        lease_expires_at = least(
            now() + make_interval(secs => coalesce(:extend, t.lease_seconds)), t.cancel_deadline),
        progress = coalesce(CAST(:progress AS jsonb), t.progress),
        state = CASE WHEN CAST(:has_state AS boolean) THEN CAST(:state AS jsonb)
                     ELSE t.state END,
        updated_at = now()
    WHERE {_HELD} AND t.{LEASED_PREDICATE}
    RETURNING t.*
), progressed AS (
    SELECT * FROM upd WHERE CAST(:progress AS jsonb) IS NOT NULL
), ev AS ({outbox("progressed", "ARRAY['task.progress']", _PROGRESS_EXTRA)})
SELECT * FROM upd
"""
    )
)


async def heartbeat(
    conn: AnyConnection,
    task_id: str,
    token: str,
    *,
    extend_seconds: float | None,
    progress: dict[str, Any] | None,
    state: Any,
    has_state: bool,
) -> Row | None:
    """Extend a live (running or cancelling) lease; record progress and state."""
    return await _HEARTBEAT_SQL.first(
        conn,
        {
            "id": task_id,
            "token": token,
            "extend": extend_seconds,
            "progress": dumps(progress) if progress is not None else None,
            "state": dumps(state) if has_state else None,
            "has_state": has_state,
        },
    )


_STATE_SQL = text(
    f"""
UPDATE tasks t SET
    state = CASE WHEN CAST(:merge AS boolean)
                 THEN coalesce(t.state, '{{}}'::jsonb) || CAST(:state AS jsonb)
                 ELSE CAST(:state AS jsonb) END,
    updated_at = now()
WHERE {_HELD} AND t.{LEASED_PREDICATE}
RETURNING t.*
"""
)


async def set_state(
    conn: AsyncConnection, task_id: str, token: str, state: Any, *, merge: bool
) -> Row | None:
    """Replace or shallow-merge the task's state map under a held lease."""
    result = await conn.execute(
        _STATE_SQL, {"id": task_id, "token": token, "state": dumps(state), "merge": merge}
    )
    return result.mappings().first()


_CHILD_FAILED_NOW = (
    f"NOT ({CHILDREN_LIVE.sql.format(t='t')}) AND ({CHILD_FAILED.sql.format(t='t')})"
)

# Live children: the task waits for them (then finalizes); a fail_fast parent whose child
# failed permanently fails instead; a task that spawned children always gets its finalize
# lease, also when they all ended before it reported (lifecycle: complete).
_COMPLETE_SQL = Statement(
    text(
        f"""
WITH src AS (
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:tokens AS uuid[]),
        CAST(:results AS text[]), CAST(:states AS text[]), CAST(:has_states AS boolean[]),
        CAST(:act_read AS bigint[]), CAST(:act_write AS bigint[]),
        CAST(:act_rx AS bigint[]), CAST(:act_tx AS bigint[]))
        AS s(id, token, result, state, has_state, act_read, act_write, act_rx, act_tx)
), upd AS (
    UPDATE tasks t SET
        status = {status_sql(Event.COMPLETE)},
        phase = {phase_sql(Event.COMPLETE)},
        error = CASE WHEN {_CHILD_FAILED_NOW}
                     THEN jsonb_build_object('message', 'a child task failed')
                     ELSE t.error END,
        updated_at = now(),
        result = CAST(s.result AS jsonb),
        state = CASE WHEN s.has_state THEN CAST(s.state AS jsonb) ELSE t.state END,
        act_read_bytes = s.act_read, act_write_bytes = s.act_write,
        act_net_rx_bytes = s.act_rx, act_net_tx_bytes = s.act_tx
    FROM src s
    WHERE t.id = s.id AND t.lease_token = s.token AND t.status = 'running'
      AND t.lease_expires_at > now()
    RETURNING t.*
), ev AS ({outbox("upd", events_sql(Event.COMPLETE))})
SELECT upd.*, {_NOTIFY_LEASABLE} AS notified
FROM upd
"""
    )
)


@dataclass(frozen=True, slots=True)
class Completion:
    """One lease's outcome report."""

    task_id: str
    token: str
    result: Any
    state: Any
    has_state: bool
    actual_io: tuple[int, int, int, int] | None


async def complete(conn: AnyConnection, items: Sequence[Completion]) -> dict[str, Row]:
    """Complete every item whose lease is held and live (one statement); rows by task id."""
    io = [c.actual_io for c in items]
    rows = await _COMPLETE_SQL.rows(
        conn,
        {
            "ids": [c.task_id for c in items],
            "tokens": [c.token for c in items],
            "results": [dumps(c.result) for c in items],
            "states": [dumps(c.state) if c.has_state else None for c in items],
            "has_states": [c.has_state for c in items],
            "act_read": [x[0] if x else None for x in io],
            "act_write": [x[1] if x else None for x in io],
            "act_rx": [x[2] if x else None for x in io],
            "act_tx": [x[3] if x else None for x in io],
        },
    )
    return {row["id"]: row for row in rows}


# Retry delay in seconds: the worker's retry_after if given, else the task's backoff
# (exponential: base * 2^(attempt-1), capped) with "equal jitter" (50-100% of it), so
# a burst of failures does not retry in lockstep.
_RETRY_DELAY = """coalesce(CAST(:retry_after AS float8),
    CASE WHEN t.backoff = 'fixed' THEN t.backoff_base_seconds
         ELSE least(t.backoff_max_seconds,
                    t.backoff_base_seconds * power(2, greatest(t.attempt - 1, 0)))
    END * (0.5 + random() / 2))"""

_RETRY_AT = "now() + make_interval(secs => d.delay)"

_FAIL_SQL = text(
    f"""
WITH d AS (
    SELECT t.id, {_RETRY_DELAY} AS delay
    FROM tasks t WHERE {_HELD} AND t.status = 'running'
    FOR UPDATE
), upd AS (
    UPDATE tasks t SET
        status = {status_sql(Event.FAIL, run_after=_RETRY_AT)},
        run_after = CASE WHEN {RETRY.sql.format(t="t")} THEN {_RETRY_AT} ELSE t.run_after END,
        error = CAST(:error AS jsonb), updated_at = now()
    FROM d WHERE t.id = d.id
    RETURNING t.*
), ev AS ({
        outbox(
            "upd",
            events_sql(Event.FAIL),
            "jsonb_build_object('error', u.error) || CASE WHEN u.status = 'failed'"
            " THEN '{}'::jsonb ELSE jsonb_build_object('run_after', u.run_after) END",
        )
    })
SELECT upd.*, {_NOTIFY_LEASABLE} AS notified
FROM upd
"""
)


async def fail(
    conn: AsyncConnection,
    task_id: str,
    token: str,
    *,
    error: Any,
    retryable: bool,
    retry_after_seconds: float | None,
) -> Row | None:
    """Record a failure: retry later while attempts remain, else ``failed``."""
    result = await conn.execute(
        _FAIL_SQL,
        {
            "id": task_id,
            "token": token,
            "error": dumps(error),
            "retryable": retryable,
            "retry_after": retry_after_seconds,
        },
    )
    return result.mappings().first()


_RELEASE_SQL = text(
    f"""
WITH upd AS (
    UPDATE tasks t SET status = {status_sql(Event.RELEASE)},
        attempt = greatest(t.attempt - CASE WHEN t.phase = 'execute' THEN 1 ELSE 0 END, 0),
        updated_at = now(),
        started_at = CASE WHEN t.attempt <= 1 THEN NULL ELSE t.started_at END
    WHERE {_HELD} AND t.status = 'running'
    RETURNING t.*
), ev AS ({outbox("upd", events_sql(Event.RELEASE))})
SELECT upd.*, {notify_once("upd", "u.status = 'pending'")} AS notified
FROM upd
"""
)


async def release(conn: AsyncConnection, task_id: str, token: str) -> Row | None:
    """Give a lease back unfinished: the task is leasable again, the attempt not counted."""
    result = await conn.execute(_RELEASE_SQL, {"id": task_id, "token": token})
    return result.mappings().first()


_ACK_SQL = text(
    f"""
WITH upd AS (
    UPDATE tasks t SET status = {status_sql(Event.ACK)}, updated_at = now()
    WHERE t.id = :id AND t.lease_token = CAST(:token AS uuid) AND t.{LEASED_PREDICATE}
      AND t.status = 'cancelling'
    RETURNING t.*
), ev AS ({
        outbox(
            "upd",
            events_sql(Event.ACK),
            "jsonb_strip_nulls(jsonb_build_object('superseded_by', u.superseded_by,"
            " 'reason', u.cancel_reason, 'acknowledged', true))",
        )
    })
SELECT upd.*, {notify_once("upd", _SLOT_FREED)} AS notified FROM upd
"""
)


async def acknowledge_cancel(conn: AsyncConnection, task_id: str, token: str) -> Row | None:
    """The worker ran on_cancel: the revoked task becomes terminal."""
    result = await conn.execute(_ACK_SQL, {"id": task_id, "token": token})
    return result.mappings().first()
