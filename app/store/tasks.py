"""Task queries: submit, read, list.

The hot paths are hand-written SQL with bound parameters: each state change is one
statement whose data-modifying CTEs also write the outbox event and send the NOTIFY,
so a change costs one round trip and can never be seen without its event.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import LIVE_PREDICATE

#: A result row, addressed by column name.
Row = RowMapping

#: LISTEN/NOTIFY channel that wakes long-polling lease requests on every replica.
WORK_CHANNEL = "taskmill_work"

#: The status a task takes when it becomes leasable again: paused if its group is.
REQUEUE_STATUS = (
    "CASE WHEN EXISTS (SELECT 1 FROM groups g WHERE g.name = t.group_name AND g.paused)"
    " THEN 'paused' ELSE 'pending' END"
)

#: Event payload common to every task-level event (SPEC §11): the change's own fields.
EVENT_DATA = (
    "jsonb_build_object('status', {a}.status, 'attempt', {a}.attempt, 'priority', {a}.priority)"
)


def dumps(value: Any) -> str:
    """JSON text for a jsonb parameter (compact, NUL-free input is checked upstream)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


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
    # Set only for a task that replaces a superseded one (see store.supersede).
    seq: int | None = None
    blocked_on: str | None = None
    state_from: str | None = None
    supersedes: str | None = None


# One statement for a whole batch: lock the groups involved (FOR SHARE, so a concurrent
# pause either sees these rows or is seen by them), insert in input order, skip rows whose
# dedup key is held (the partial unique index decides, also against rows inserted earlier
# in this same statement), write a task.created event per inserted row and NOTIFY once.
# A task whose key's previous holder is still being cancelled (a worker is running its
# on_cancel hook) is inserted blocked on it: never two leased tasks for one key.
_INSERT_SQL = text(
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
        CAST(:seqs AS bigint[]), CAST(:blocked_ons AS text[]),
        CAST(:state_froms AS text[]), CAST(:supersedes AS text[])
    ) WITH ORDINALITY AS u(id, type, priority, payload, dedup_key, group_name, label, tags,
        exp_read, exp_write, exp_rx, exp_tx, max_attempts, backoff, base, max, run_after,
        ttl, parent_id, fail_fast, seq, blocked_on, state_from, supersedes, ord)
), ins AS (
    INSERT INTO tasks AS t (id, type, status, priority, payload, dedup_key, group_name, label,
        tags, exp_read_bytes, exp_write_bytes, exp_net_rx_bytes, exp_net_tx_bytes,
        max_attempts, backoff, backoff_base_seconds, backoff_max_seconds, run_after,
        ttl_deadline, parent_id, fail_fast, seq, blocked_on, state_from, supersedes)
    SELECT u.id, u.type,
        CASE WHEN coalesce(u.blocked_on, pred.id) IS NOT NULL THEN 'blocked'
             WHEN u.run_after > now() THEN 'scheduled'
             WHEN coalesce(g.paused, false) THEN 'paused'
             ELSE 'pending' END,
        u.priority, CAST(u.payload AS jsonb), u.dedup_key, u.group_name, u.label,
        CAST(u.tags AS jsonb), u.exp_read, u.exp_write, u.exp_rx, u.exp_tx,
        u.max_attempts, u.backoff, u.base, u.max, coalesce(u.run_after, now()),
        now() + make_interval(secs => u.ttl), u.parent_id, u.fail_fast,
        coalesce(u.seq, nextval('task_seq')), coalesce(u.blocked_on, pred.id),
        coalesce(u.state_from, pred.id), u.supersedes
    FROM src u LEFT JOIN grp g ON g.name = u.group_name
    LEFT JOIN LATERAL (
        SELECT c.id FROM tasks c
        WHERE c.type = u.type AND c.dedup_key = u.dedup_key AND c.status = 'cancelling'
        LIMIT 1
    ) pred ON u.dedup_key IS NOT NULL
    ORDER BY u.ord
    ON CONFLICT (type, dedup_key) WHERE dedup_key IS NOT NULL AND {LIVE_PREDICATE} DO NOTHING
    RETURNING t.*
), keys AS (
    INSERT INTO tag_keys (key)
    SELECT DISTINCT k FROM ins, jsonb_object_keys(ins.tags) AS k
    ORDER BY k  -- a fixed order: two batches adding the same new keys never deadlock
    ON CONFLICT DO NOTHING
), ev AS (
    INSERT INTO events (event, task_id, type, group_name, tags, data)
    SELECT 'task.created', i.id, i.type, i.group_name, i.tags, {EVENT_DATA.format(a="i")}
        || jsonb_strip_nulls(jsonb_build_object('supersedes', i.supersedes,
            'parent_id', i.parent_id, 'blocked_on', i.blocked_on))
    FROM ins i
)
SELECT ins.*,
    (SELECT 1 FROM (SELECT pg_notify('{WORK_CHANNEL}', '') FROM ins
        WHERE ins.status = 'pending' LIMIT 1) n) AS notified
FROM ins
"""
)


async def insert_tasks(conn: AsyncConnection, new: Sequence[NewTask]) -> dict[str, Row]:
    """Insert the tasks whose dedup key is free; return the inserted rows by id."""
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
        "blocked_ons": [t.blocked_on for t in new],
        "state_froms": [t.state_from for t in new],
        "supersedes": [t.supersedes for t in new],
    }
    result = await conn.execute(_INSERT_SQL, params)
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


_EVENTS_SQL = text(
    f"""
INSERT INTO events (event, task_id, type, group_name, tags, data)
SELECT CAST(:event AS text), t.id, t.type, t.group_name, t.tags, {EVENT_DATA.format(a="t")}
FROM tasks t WHERE t.id = ANY(CAST(:ids AS text[]))
"""
)


async def record_task_events(conn: AsyncConnection, event: str, task_ids: Sequence[str]) -> None:
    """Write one ``event`` per task (for changes that are not themselves an UPDATE)."""
    if task_ids:
        await conn.execute(_EVENTS_SQL, {"event": event, "ids": list(task_ids)})


async def get_task(conn: AsyncConnection, task_id: str) -> Row | None:
    """One task by id, any status."""
    result = await conn.execute(text("SELECT * FROM tasks WHERE id = :id"), {"id": task_id})
    return result.mappings().first()
