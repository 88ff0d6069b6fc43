"""BENCHMARK-ONLY MODEL of the tag layout not taken: a ``task_tags(task_id, key, value)`` table.

Nothing in the service uses this. taskmill keeps a task's tags in ``tasks.tags`` (JSONB)
under a GIN ``jsonb_path_ops`` index (layout (a)); the usual alternative (layout (b))
keeps one row per tag in a side table, primary key ``(task_id, key)`` and an index on
``(key, value)``. ``taskmill bench --tags`` creates that table in its scratch database,
fills it from the very tags seeded into ``tasks``, and runs on it the SQL that the
service's queries (``app/store/queries.py``) would become under layout (b):

* the tag filter becomes a lookup in ``(key, value)``, keeping the service's strategy
  (the matching ids first, then the first page of them in id order);
* value counts become an index-only scan of ``(key, value)``;
* grouping by a tag becomes a left join on the primary key (a task lacking the tag
  still counts, in the NULL group, as in the service).

Writes use the service's submit statement with one more data-modifying CTE that inserts
the tag rows, in the same statement (so the same one round trip and one transaction).
The model keeps the JSONB column as the record's copy of the tags (task views and
events read it; a model that rebuilt the map from ``task_tags`` on every read would only
be slower) but drops the GIN index, which layout (b) does not have. It has no foreign
key to ``tasks`` (retention would delete the tag rows itself): the cheapest form of (b).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import tasks as store_tasks
from app.store.common import Row
from app.store.db import Statement

from .drivers import BenchError

TAG_TABLE = "task_tags"

_CREATE_SQL = (
    f"CREATE TABLE {TAG_TABLE} (task_id text NOT NULL, key text NOT NULL, value text NOT NULL)"
)
# Filled first, indexed after: the bulk-load order, as for tasks. The rows come out in
# the (freshly seeded) tasks table's physical order, which is id order.
_FILL_SQL = f"""
INSERT INTO {TAG_TABLE} (task_id, key, value)
SELECT t.id, kv.key, kv.value FROM tasks t, jsonb_each_text(t.tags) AS kv
"""
_INDEX_SQL = (
    f"ALTER TABLE {TAG_TABLE} ADD CONSTRAINT pk_{TAG_TABLE} PRIMARY KEY (task_id, key)",
    f"CREATE INDEX ix_{TAG_TABLE}_key_value ON {TAG_TABLE} (key, value)",
)


async def create_tag_table(conn: asyncpg.Connection) -> None:
    """Create and fill ``task_tags`` from ``tasks.tags``, index it, analyze it."""
    await conn.execute(_CREATE_SQL)
    await conn.execute(_FILL_SQL)
    for statement in _INDEX_SQL:
        await conn.execute(statement)
    await conn.execute(f"VACUUM ANALYZE {TAG_TABLE}")


async def drop_gin_index(conn: asyncpg.Connection) -> None:
    """Layout (b) has no GIN index on ``tasks.tags``: drop it before measuring its writes."""
    await conn.execute("DROP INDEX IF EXISTS ix_tasks_tags")


# -- queries: the service's statements, translated ------------------------------------

# queries.list_tasks with one tag filter and no cursor.
_FIRST_PAGE_SQL = text(
    f"""
WITH m AS MATERIALIZED (
    SELECT task_id AS id FROM {TAG_TABLE} WHERE key = :key AND value = :value)
SELECT t.* FROM tasks t
WHERE t.id IN (SELECT id FROM m ORDER BY id LIMIT :limit)
ORDER BY t.id
"""
)

# queries.tag_values without status or prefix filters.
_VALUES_SQL = text(
    f"""
SELECT value, count(*) AS n FROM {TAG_TABLE} WHERE key = :key
GROUP BY value ORDER BY n DESC, value LIMIT :limit
"""
)

# queries.aggregate grouped by one tag, summing one column, filtered by status.
_AGGREGATE_SQL = text(
    f"""
SELECT tt.value AS k0, sum(t.exp_net_tx_bytes) AS m0, count(*) AS n
FROM tasks t LEFT JOIN {TAG_TABLE} tt ON tt.task_id = t.id AND tt.key = :key
WHERE t.status = ANY(CAST(:statuses AS text[]))
GROUP BY k0 ORDER BY n DESC, k0 LIMIT :limit
"""
)


async def first_page(conn: AsyncConnection, key: str, value: str, limit: int) -> list[Row]:
    """Tasks tagged ``key=value``, first page in id order."""
    params = {"key": key, "value": value, "limit": limit}
    return list((await conn.execute(_FIRST_PAGE_SQL, params)).mappings())


async def tag_values(conn: AsyncConnection, key: str, limit: int) -> list[tuple[str, int]]:
    """(value, count) of ``key``, count descending."""
    rows = await conn.execute(_VALUES_SQL, {"key": key, "limit": limit})
    return [(r.value, int(r.n)) for r in rows]


async def sum_tx_by_tag(
    conn: AsyncConnection, key: str, statuses: Sequence[str], limit: int
) -> list[tuple[str | None, int, int]]:
    """(tag value, count, Σ expected net_tx_bytes) of the tasks in ``statuses``."""
    params: dict[str, Any] = {"key": key, "statuses": list(statuses), "limit": limit}
    rows = await conn.execute(_AGGREGATE_SQL, params)
    return [(r.k0, int(r.n), int(r.m0)) for r in rows]


# -- writes: the service's submit statement, plus the tag rows -------------------------

_MARKER = "), ev AS ("
_TAG_ROWS_CTE = f"""), tt AS (
    INSERT INTO {TAG_TABLE} (task_id, key, value)
    SELECT ins.id, kv.key, kv.value FROM ins, jsonb_each_text(ins.tags) AS kv
"""


def _submit_sql() -> Statement:
    """The service's submit statement with the tag rows written in it too."""
    sql = str(store_tasks._INSERT_SQL.clause.text)
    if sql.count(_MARKER) != 1:
        raise BenchError(
            "the submit statement (app/store/tasks.py) changed shape: update the task_tags "
            "model in tools/taskmill_bench/tagtable.py"
        )
    return Statement(text(sql.replace(_MARKER, _TAG_ROWS_CTE + _MARKER)))


@contextmanager
def submits_into_tag_table() -> Iterator[None]:
    """While open, this process's submits also write ``task_tags`` (layout (b)).

    Swaps the submit statement the store module executes, so that layout (b) is
    measured through exactly the same code path as the service (validation, id
    minting, one transaction, one statement); restored on exit.
    """
    real = store_tasks._INSERT_SQL
    store_tasks._INSERT_SQL = _submit_sql()
    try:
        yield
    finally:
        store_tasks._INSERT_SQL = real


async def storage_bytes(conn: asyncpg.Connection) -> tuple[int, int, int]:
    """Bytes of the tags column, of its GIN index, and of ``task_tags`` with its indexes."""
    column = await conn.fetchval("SELECT coalesce(sum(pg_column_size(tags)), 0) FROM tasks")
    gin = await conn.fetchval("SELECT pg_relation_size('ix_tasks_tags')")
    table = await conn.fetchval(f"SELECT pg_total_relation_size('{TAG_TABLE}')")
    return int(column), int(gin), int(table)
