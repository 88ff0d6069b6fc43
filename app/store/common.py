"""What every module of the store shares: the row type, JSON parameters, the work
channel, and the SQL that writes the outbox and wakes long polls."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy import RowMapping

#: A result row addressed by column name: SQLAlchemy's ``RowMapping``, or asyncpg's
#: ``Record`` where a statement ran on the driver itself (the hot paths, see store.db).
Row: TypeAlias = RowMapping | asyncpg.Record

#: LISTEN/NOTIFY channel that wakes long-polling lease requests on every replica.
WORK_CHANNEL = "taskmill_work"


def dumps(value: Any) -> str:
    """JSON text for a jsonb parameter (compact; NUL-free input is checked upstream)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def event_data(a: str) -> str:
    """The fields common to every task-level event (SPEC §11), of row alias ``a``."""
    return (
        f"jsonb_build_object('status', {a}.status, 'attempt', {a}.attempt,"
        f" 'priority', {a}.priority, 'phase', {a}.phase)"
    )


def outbox(rows: str, names: str, extra: str = "'{}'::jsonb") -> str:
    """INSERT of the events a statement announces: for each row ``u`` of ``rows`` (a CTE
    or a subquery with alias), one event per name of the ``text[]`` ``names`` (over ``u``),
    in order, with the common fields and ``extra`` (over ``u``).

    Writing the outbox in the statement that made the change means a change is never seen
    without its event (app/store/events.py reads them)."""
    return f"""INSERT INTO events (event, task_id, type, group_name, tags, data)
    SELECT e.name, u.id, u.type, u.group_name, u.tags, {event_data("u")} || {extra}
    FROM {rows} u CROSS JOIN LATERAL unnest({names}) WITH ORDINALITY AS e(name, ord)
    ORDER BY u.id, e.ord"""


def notify_once(rows: str, condition: str) -> str:
    """A scalar subquery that sends one NOTIFY on the work channel if any row of ``rows``
    (alias ``u``) meets ``condition``; PostgreSQL folds repeats within a transaction."""
    return f"""(SELECT 1 FROM (SELECT pg_notify('{WORK_CHANNEL}', '') FROM {rows} u
        WHERE {condition} LIMIT 1) n)"""
