"""Reading the outbox (``events``) for ``GET /events``, without loss or duplicates.

Event ids come from a sequence, so they are allocated in one order and committed in
another: a writer may hold id 10 uncommitted while id 11 is already visible. A reader that
streamed 11 and later resumed "after 11" would skip 10 forever. So readers stream, in id
order, only ids up to a *safe horizon*: an id below which no event can still appear.

The horizon comes from two facts:

* every event row takes its id from ``taskmill_next_event_id()`` (migration 0004), which
  makes sure the writing transaction has a transaction id *before* it draws the event id;
* ``pg_stat_activity.backend_xid`` lists the transaction ids held right now by the
  sessions of this database (a session's id is cleared only once its commit is visible).

Probe k reads the sequence's last value ``S``; probe k+1 (a later statement) reads the
writers ``W`` of this database. Every writer holding an id ≤ S had its transaction id
before S was read, so it is in ``W`` unless it has already ended. Once none of ``W`` is
still running, every event with id ≤ S is visible or never will be: S is safe. Only this
database's writers matter (other databases cannot write this table), so a long
transaction elsewhere in the cluster does not hold the stream back. Any replica computes
the same horizon from the shared table, so any replica serves events caused on any other.
(Prepared two-phase transactions are not sessions; the service never uses them.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .common import Row

_PROBE_SQL = text(
    """
SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END AS last_id,
    ARRAY(SELECT CAST(CAST(a.backend_xid AS text) AS bigint) FROM pg_stat_activity a
          WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL) AS writers
FROM events_id_seq s
"""
)


@dataclass(frozen=True, slots=True)
class Probe:
    """The sequence's last value and the transaction ids this database's sessions hold."""

    last_id: int
    writers: frozenset[int]


async def probe(conn: AsyncConnection) -> Probe:
    """One probe of the horizon (see the module docstring)."""
    row = (await conn.execute(_PROBE_SQL)).one()
    return Probe(int(row.last_id), frozenset(int(x) for x in row.writers))


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Filters of ``GET /events``: AND across kinds, OR within one (tags: per key)."""

    types: Sequence[str] = ()
    events: Sequence[str] = ()
    task_ids: Sequence[str] = ()
    tags: dict[str, list[str]] = field(default_factory=dict)


async def read(
    conn: AsyncConnection, flt: EventFilter, after: int, upto: int, limit: int
) -> list[Row]:
    """Events with ``after < id <= upto`` that match, in id order, at most ``limit``."""
    clauses = ["id > :after", "id <= :upto"]
    params: dict[str, Any] = {"after": after, "upto": upto, "limit": limit}
    if flt.types:
        clauses.append("type = ANY(CAST(:types AS text[]))")
        params["types"] = list(flt.types)
    if flt.events:
        clauses.append("event = ANY(CAST(:events AS text[]))")
        params["events"] = list(flt.events)
    if flt.task_ids:
        clauses.append("task_id = ANY(CAST(:task_ids AS text[]))")
        params["task_ids"] = list(flt.task_ids)
    for i, (key, values) in enumerate(sorted(flt.tags.items())):
        clauses.append(f"tags ->> CAST(:tk{i} AS text) = ANY(CAST(:tv{i} AS text[]))")
        params[f"tk{i}"] = key
        params[f"tv{i}"] = list(values)
    sql = f"""
SELECT id, at, event, task_id, type, group_name, tags, data FROM events
WHERE {" AND ".join(clauses)} ORDER BY id LIMIT :limit
"""
    return list((await conn.execute(text(sql), params)).mappings())
