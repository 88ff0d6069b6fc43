"""Submitting and reading tasks.

A submit is one INSERT for a whole batch. A keyed task then needs a second statement: is
its key's older generation still being cancelled? That question must be asked *after*
the INSERT, in a statement of its own, because the INSERT may have waited on the unique
index for a concurrent cancel of the key's holder to commit, and its snapshot predates
that cancel (it would see the holder running and miss that it is now cancelling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.lifecycle import BLOCKER_SQL, LIVE_PREDICATE
from .common import Row, dumps, outbox
from .db import AnyConnection, Statement


@dataclass(frozen=True, slots=True)
class NewTask:
    """A validated submission, ready to insert."""

    id: str
    type: str
    priority: int
    payload_json: str
    dedup_key: str | None
    group_name: str | None
    label: str | None
    tags: dict[str, str]
    expected_io: tuple[int, int, int, int]
    max_attempts: int
    backoff: str
    backoff_base_seconds: float
    backoff_max_seconds: float
    run_after: datetime | None
    ttl_seconds: float | None
    parent_id: str | None
    fail_fast: bool
    # Set only for a task that replaces a superseded one (see domain.tasks).
    seq: int | None = None
    state_from: str | None = None
    supersedes: str | None = None


_CREATED_EXTRA = (
    "jsonb_strip_nulls(jsonb_build_object('supersedes', u.supersedes,"
    " 'parent_id', u.parent_id, 'blocked_on', u.blocked_on))"
)

# One statement for a whole batch: lock the groups involved (FOR SHARE, so a concurrent
# pause either sees these rows or is seen by them), insert in input order, skip rows whose
# dedup key is held (the partial unique index decides, also against rows inserted earlier
# in this same statement). A child joins its parent's fence; a keyed root starts one.
# Unkeyed rows are final here: their event goes out now. Keyed rows get theirs from the
# second statement (_SETTLE_SQL), once their status is known. Neither NOTIFYs: the use
# case announces pending work after its commit (store.notify.WorkListener.announce).
_INSERT_SQL = Statement(
    text(
        f"""
WITH grp AS (
    SELECT name, paused FROM groups
    WHERE name = ANY(CAST(:group_names AS text[])) FOR SHARE
), src AS (
    SELECT * FROM unnest(
        CAST(:ids AS text[]), CAST(:types AS text[]), CAST(:priorities AS int[]),
        CAST(:payloads AS text[]), CAST(:dedup_keys AS text[]), CAST(:groups AS text[]),
        CAST(:labels AS text[]), CAST(:tags AS text[]),
        CAST(:exp_read AS bigint[]), CAST(:exp_write AS bigint[]),
        CAST(:exp_rx AS bigint[]), CAST(:exp_tx AS bigint[]),
        CAST(:max_attempts AS int[]), CAST(:backoffs AS text[]),
        CAST(:bases AS float8[]), CAST(:maxes AS float8[]),
        CAST(:run_afters AS timestamptz[]), CAST(:ttls AS float8[]),
        CAST(:parent_ids AS text[]), CAST(:fail_fasts AS boolean[]),
        CAST(:seqs AS bigint[]), CAST(:state_froms AS text[]), CAST(:supersedes AS text[])
    ) WITH ORDINALITY AS u(id, type, priority, payload, dedup_key, group_name, label, tags,
        exp_read, exp_write, exp_rx, exp_tx, max_attempts, backoff, base, max, run_after,
        ttl, parent_id, fail_fast, seq, state_from, supersedes, ord)
), ins AS (
    INSERT INTO tasks AS t (id, type, status, priority, payload, dedup_key, group_name, label,
        tags, exp_read_bytes, exp_write_bytes, exp_net_rx_bytes, exp_net_tx_bytes,
        max_attempts, backoff, backoff_base_seconds, backoff_max_seconds, run_after,
        ttl_deadline, parent_id, fail_fast, seq, state_from, supersedes, fence_key, fence_gen)
    SELECT u.id, u.type,
        -- lifecycle: submit -> requeue (scheduled, paused with its group, else pending)
        CASE WHEN u.run_after > now() THEN 'scheduled'
             WHEN coalesce(g.paused, false) THEN 'paused'
             ELSE 'pending' END,
        u.priority, CAST(u.payload AS jsonb), u.dedup_key, u.group_name, u.label,
        CAST(u.tags AS jsonb), u.exp_read, u.exp_write, u.exp_rx, u.exp_tx,
        u.max_attempts, u.backoff, u.base, u.max, coalesce(u.run_after, now()),
        now() + make_interval(secs => u.ttl), u.parent_id, u.fail_fast,
        coalesce(u.seq, nextval('task_seq')), u.state_from, u.supersedes,
        coalesce(p.fence_key, CASE WHEN u.dedup_key IS NOT NULL
                                   THEN u.type || '/' || u.dedup_key END),
        CASE WHEN p.fence_key IS NOT NULL THEN p.fence_gen
             WHEN u.dedup_key IS NOT NULL THEN u.id END
    FROM src u LEFT JOIN grp g ON g.name = u.group_name
    LEFT JOIN tasks p ON p.id = u.parent_id
    ORDER BY u.ord
    ON CONFLICT (type, dedup_key) WHERE dedup_key IS NOT NULL AND {LIVE_PREDICATE} DO NOTHING
    RETURNING t.*
), keys AS (
    INSERT INTO tag_keys (key)
    SELECT DISTINCT k FROM ins, jsonb_object_keys(ins.tags) AS k
    ORDER BY k  -- a fixed order: two batches adding the same new keys never deadlock
    ON CONFLICT DO NOTHING
), final AS (
    SELECT * FROM ins WHERE dedup_key IS NULL
), ev AS ({outbox("final", "ARRAY['task.created']", _CREATED_EXTRA)})
SELECT * FROM ins
"""
    )
)


async def insert_tasks(conn: AnyConnection, new: Sequence[NewTask]) -> dict[str, Row]:
    """Insert the tasks whose dedup key is free; return the inserted rows by id.

    Keyed rows must then go through :func:`settle` in the same transaction. Tasks with
    neither a key nor a parent need nothing else: they may be inserted on a driver
    connection outside a transaction (the statement commits itself).
    """
    params = {
        "group_names": sorted({t.group_name for t in new if t.group_name}),
        "ids": [t.id for t in new],
        "types": [t.type for t in new],
        "priorities": [t.priority for t in new],
        "payloads": [t.payload_json for t in new],
        "dedup_keys": [t.dedup_key for t in new],
        "groups": [t.group_name for t in new],
        "labels": [t.label for t in new],
        "tags": [dumps(t.tags) for t in new],
        "exp_read": [t.expected_io[0] for t in new],
        "exp_write": [t.expected_io[1] for t in new],
        "exp_rx": [t.expected_io[2] for t in new],
        "exp_tx": [t.expected_io[3] for t in new],
        "max_attempts": [t.max_attempts for t in new],
        "backoffs": [t.backoff for t in new],
        "bases": [t.backoff_base_seconds for t in new],
        "maxes": [t.backoff_max_seconds for t in new],
        "run_afters": [t.run_after for t in new],
        "ttls": [t.ttl_seconds for t in new],
        "parent_ids": [t.parent_id for t in new],
        "fail_fasts": [t.fail_fast for t in new],
        "seqs": [t.seq for t in new],
        "state_froms": [t.state_from for t in new],
        "supersedes": [t.supersedes for t in new],
    }
    return {row["id"]: row for row in await _INSERT_SQL.rows(conn, params)}


# The second statement of a keyed submit (lifecycle: block). Its snapshot is fresh, so it
# sees any cancel the INSERT waited for. The cancelling blockers it finds are locked FOR
# SHARE: a transaction ending one of them either committed before (then it is no blocker:
# the lock's re-check sees it over) or waits for this one to commit, and then finds this
# task blocked and releases it (app/store/sql: taskmill_unblock). The task waits on the
# root of the older generation (or on the cancelling task of its own key).
_SETTLE_SQL = text(
    f"""
WITH b AS (
    SELECT * FROM tasks WHERE id = ANY(CAST(:ids AS text[]))
), pred AS MATERIALIZED (
    SELECT b.id AS bid,
        CASE WHEN o.fence_key = b.fence_key AND o.fence_gen <> b.fence_gen
             THEN o.fence_gen ELSE o.id END AS waits_on
    FROM b JOIN tasks o ON {BLOCKER_SQL.format(o="o", t="b")}
    FOR SHARE OF o
), firsts AS (
    SELECT bid, min(waits_on) AS waits_on FROM pred GROUP BY bid
), upd AS (
    UPDATE tasks t SET status = 'blocked', blocked_on = f.waits_on, updated_at = now()
    FROM firsts f WHERE t.id = f.bid
    RETURNING t.*
), final AS (
    SELECT b.id, b.type, b.group_name, b.tags, b.attempt, b.priority, b.phase, b.supersedes,
        b.parent_id, coalesce(upd.status, b.status) AS status, upd.blocked_on
    FROM b LEFT JOIN upd ON upd.id = b.id
), ev AS ({outbox("final", "ARRAY['task.created']", _CREATED_EXTRA)})
SELECT * FROM upd
"""
)


async def settle(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Row]:
    """Block the just-inserted keyed tasks whose key's older generation is still being
    cancelled; announce all of them. Returns the rows that were blocked, by id."""
    if not ids:
        return {}
    result = await conn.execute(_SETTLE_SQL, {"ids": list(ids)})
    return {row["id"]: row for row in result.mappings()}


_HOLDERS_SQL = text(
    f"""
SELECT t.* FROM tasks t
JOIN unnest(CAST(:types AS text[]), CAST(:keys AS text[])) AS k(type, dedup_key)
  ON t.type = k.type AND t.dedup_key = k.dedup_key
WHERE t.{LIVE_PREDICATE}
"""
)


async def live_holders(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Row]:
    """The live task holding each (type, dedup_key), where one does."""
    if not keys:
        return {}
    result = await conn.execute(
        _HOLDERS_SQL, {"types": [k[0] for k in keys], "keys": [k[1] for k in keys]}
    )
    return {(row["type"], row["dedup_key"]): row for row in result.mappings()}


_DEDUPLICATED_SQL = text(
    f"""
WITH d AS (SELECT * FROM tasks WHERE id = ANY(CAST(:ids AS text[])))
{outbox("d", "ARRAY['task.deduplicated']")}
"""
)


async def record_deduplicated(conn: AsyncConnection, task_ids: Sequence[str]) -> None:
    """A ``task.deduplicated`` event per holder that answered a skipped duplicate."""
    if task_ids:
        await conn.execute(_DEDUPLICATED_SQL, {"ids": list(task_ids)})


async def get_task(conn: AsyncConnection, task_id: str) -> Row | None:
    """One task by id, any status."""
    result = await conn.execute(text("SELECT * FROM tasks WHERE id = :id"), {"id": task_id})
    return result.mappings().first()
