"""Bulk seeding for ``taskmill bench --tags``: N tasks with five tags each, in one statement.

What the seeded data looks like (ids in submission order, oldest first):

* five tags per task, with the cardinalities of a file-transfer workload: ``profile``
  (10 values), ``dst_endpoint`` (50), ``direction`` (2), ``object_key`` (one per task)
  and ``part`` (100). Values come from hashes of the task number, so the keys are
  independent of each other and of the status;
* expected I/O: an object of 1-65 MiB, read and sent (``ltr``) or received and
  written (``rtl``); completed tasks report the same figures as actual I/O;
* the status mix of a queue that keeps up: the most recently submitted tenth is
  pending, a thin slice before it running, and everything older finished (about 95%
  completed, 3% failed, 2% cancelled). Submissions are spread over the past day, well
  inside the retention period, so the server's retention deletes none of them.

Like :mod:`taskmill_bench.scratch`, this bypasses the app: one ``INSERT … SELECT
generate_series`` with the secondary indexes dropped, then rebuilt from their own
definitions (as the migrations made them), which is several times faster than
maintaining them row by row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from app.schemas.tasks import TaskSubmit

#: Task type of every task this mode creates.
TASK_TYPE = "bench.tags"
#: A submission's defaults (priority, retry policy): what seeded rows carry.
DEFAULTS = TaskSubmit(type=TASK_TYPE)
#: The five tag keys of every seeded task.
TAG_KEYS = ("profile", "dst_endpoint", "direction", "object_key", "part")
PROFILES = (
    "archive",
    "backup",
    "dr",
    "replica",
    "migrate",
    "tiering",
    "ingest",
    "export",
    "restore",
    "sync",
)
DST_ENDPOINTS = 50
DIRECTIONS = ("ltr", "rtl")
PARTS = 100
#: One task in this many is pending (the most recent ones).
PENDING_EVERY = 10
#: One task in this many is running (those submitted just before the pending ones).
RUNNING_EVERY = 500
#: Memory for the index builds after seeding (per session; the server default is small).
MAINTENANCE_WORK_MEM = "256MB"


def object_key(i: int) -> str:
    """The ``object_key`` tag of task number ``i`` (unique per task)."""
    return f"objects/{i:010d}.bin"


def dst_endpoint(j: int) -> str:
    """The ``j``-th value of ``dst_endpoint``."""
    return f"dst-{j:02d}"


def pending_count(n: int) -> int:
    """How many of ``n`` seeded tasks are pending."""
    return n // PENDING_EVERY


def running_count(n: int) -> int:
    """How many of ``n`` seeded tasks are running."""
    return n // RUNNING_EVERY


# The SQL twins of object_key() and dst_endpoint() above, over the task number i.
_OBJECT_KEY = "'objects/' || lpad(CAST(i AS text), 10, '0') || '.bin'"
_DST_ENDPOINT = (
    f"'dst-' || lpad(CAST(abs(hashint4extended(i, 2) % {DST_ENDPOINTS}) AS text), 2, '0')"
)

# $1 n, $2 pending, $3 running, $4 type, $5 profiles, $6 priority, then the retry policy.
_SEED_SQL = f"""
INSERT INTO tasks (id, seq, type, status, priority, payload, tags,
    exp_read_bytes, exp_write_bytes, exp_net_rx_bytes, exp_net_tx_bytes,
    act_read_bytes, act_write_bytes, act_net_rx_bytes, act_net_tx_bytes,
    max_attempts, backoff, backoff_base_seconds, backoff_max_seconds, attempt, run_after,
    created_at, updated_at, started_at, finished_at, lease_token, lease_worker,
    lease_expires_at, lease_seconds, result, error, cancel_reason)
SELECT '00' || lpad(upper(to_hex(i)), 24, '0'), i, $4, s.status, $6,
    jsonb_build_object('n', i),
    jsonb_build_object(
        'profile', (CAST($5 AS text[]))[1 + abs(hashint4extended(i, 1) % {len(PROFILES)})],
        'dst_endpoint', {_DST_ENDPOINT},
        'direction', CASE WHEN v.up THEN '{DIRECTIONS[0]}' ELSE '{DIRECTIONS[1]}' END,
        'object_key', {_OBJECT_KEY},
        'part', CAST(1 + abs(hashint4extended(i, 3) % {PARTS}) AS text)),
    io.rd, io.wr, io.rx, io.tx,
    CASE WHEN s.done THEN io.rd END, CASE WHEN s.done THEN io.wr END,
    CASE WHEN s.done THEN io.rx END, CASE WHEN s.done THEN io.tx END,
    $7, $8, $9, $10,
    CASE WHEN s.status = 'pending' THEN 0 ELSE 1 END, v.at, v.at,
    CASE s.status WHEN 'pending' THEN v.at WHEN 'running' THEN v.at + interval '1 second'
        ELSE v.at + interval '2 seconds' END,
    CASE WHEN s.status <> 'pending' THEN v.at + interval '1 second' END,
    CASE WHEN s.ended THEN v.at + interval '2 seconds' END,
    CASE WHEN s.status <> 'pending' THEN gen_random_uuid() END,
    CASE WHEN s.status <> 'pending' THEN 'bench-seed' END,
    CASE s.status WHEN 'running' THEN now() + interval '1 hour' END,
    CASE s.status WHEN 'pending' THEN NULL WHEN 'running' THEN 3600 ELSE 30 END,
    CASE WHEN s.done THEN jsonb_build_object('ok', true) END,
    CASE WHEN s.status = 'failed' THEN jsonb_build_object('message', 'transfer failed') END,
    CASE WHEN s.status = 'cancelled' THEN 'cancelled' END
FROM generate_series(1, CAST($1 AS int)) AS i,
    LATERAL (SELECT
        now() - make_interval(secs => CAST(86400.0 * ($1 - i) / $1 AS float8)) AS at,
        hashint4extended(i, 4) % 2 = 0 AS up,
        1048576 + abs(hashint4extended(i, 5) % 67108864) AS size,
        abs(hashint4extended(i, 6) % 100) AS roll) AS v,
    LATERAL (SELECT
        CASE WHEN v.up THEN v.size ELSE 0 END AS rd,
        CASE WHEN v.up THEN 0 ELSE v.size END AS wr,
        CASE WHEN v.up THEN 0 ELSE v.size END AS rx,
        CASE WHEN v.up THEN v.size ELSE 0 END AS tx) AS io,
    LATERAL (SELECT
        CASE WHEN i > $1 - $2 THEN 'pending'
             WHEN i > $1 - $2 - $3 THEN 'running'
             WHEN v.roll < 3 THEN 'failed'
             WHEN v.roll < 5 THEN 'cancelled'
             ELSE 'completed' END AS status) AS s0,
    LATERAL (SELECT s0.status, s0.status = 'completed' AS done,
        s0.status IN ('completed', 'failed', 'cancelled') AS ended) AS s
"""

# Secondary indexes of tasks: every index not backing a constraint (the primary key
# stays, and is filled in id order).
_INDEXES_SQL = """
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = 'tasks'
  AND indexname NOT IN (
    SELECT conname FROM pg_constraint WHERE conrelid = CAST('tasks' AS regclass))
ORDER BY indexname
"""


@dataclass(frozen=True)
class Seeded:
    """What was seeded, and how long it took."""

    tasks: int
    pending: int
    running: int
    insert_seconds: float
    index_seconds: float


async def seed_tagged(conn: asyncpg.Connection, n: int) -> Seeded:
    """Fill the (empty) tasks table with ``n`` tagged tasks, register their keys, analyze."""
    pending, running = pending_count(n), running_count(n)
    retry = DEFAULTS.retry
    await conn.execute(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
    indexes = [(r["indexname"], r["indexdef"]) for r in await conn.fetch(_INDEXES_SQL)]
    began = time.perf_counter()
    async with conn.transaction():
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX "{name}"')
        await conn.execute(
            _SEED_SQL,
            n,
            pending,
            running,
            TASK_TYPE,
            list(PROFILES),
            DEFAULTS.priority,
            retry.max_attempts,
            retry.backoff,
            retry.base_seconds,
            retry.max_seconds,
        )
        await conn.execute(
            "INSERT INTO tag_keys (key) SELECT unnest(CAST($1 AS text[])) ON CONFLICT DO NOTHING",
            list(TAG_KEYS),
        )
        await conn.execute("SELECT setval('task_seq', $1)", max(n, 1))
    inserted = time.perf_counter()
    for _, definition in indexes:
        await conn.execute(definition)
    # As autovacuum would have long since done: statistics, and the visibility map.
    await conn.execute("VACUUM ANALYZE tasks")
    await conn.execute("VACUUM ANALYZE tag_keys")
    return Seeded(
        tasks=n,
        pending=pending,
        running=running,
        insert_seconds=inserted - began,
        index_seconds=time.perf_counter() - inserted,
    )
