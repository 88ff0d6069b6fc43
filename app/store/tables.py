"""The schema, defined once as SQLAlchemy Core tables.

Alembic migrations create exactly this (a test compares them). Terminal tasks stay in
``tasks``: every hot index is partial on the live statuses, so finished rows cost the
claim path nothing (see the README's design section for the measurement).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Sequence,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, UUID

LIVE_STATUSES = ("pending", "scheduled", "blocked", "running", "waiting", "paused")
TRANSITIONAL_STATUSES = ("cancelling",)
TERMINAL_STATUSES = ("completed", "failed", "cancelled", "superseded", "expired")
ALL_STATUSES = LIVE_STATUSES + TRANSITIONAL_STATUSES + TERMINAL_STATUSES


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# Predicates shared by index definitions and the queries that must match them.
LIVE_PREDICATE = _in("status", LIVE_STATUSES)
TERMINAL_PREDICATE = _in("status", TERMINAL_STATUSES)
LEASED_PREDICATE = _in("status", ("running", "cancelling"))
UNSTARTED_PREDICATE = _in("status", ("pending", "scheduled", "paused", "blocked"))

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = TIMESTAMP(timezone=True)

# Queue position. Not unique: a task that supersedes a pending one takes its position.
task_seq = Sequence("task_seq", metadata=metadata)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("seq", BigInteger, task_seq, nullable=False, server_default=task_seq.next_value()),
    Column("type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("dedup_key", Text),
    Column("group_name", Text),
    Column("label", Text),
    Column("tags", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("exp_read_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("exp_write_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("exp_net_rx_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("exp_net_tx_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("act_read_bytes", BigInteger),
    Column("act_write_bytes", BigInteger),
    Column("act_net_rx_bytes", BigInteger),
    Column("act_net_tx_bytes", BigInteger),
    Column("max_attempts", Integer, nullable=False),
    Column("backoff", Text, nullable=False),
    Column("backoff_base_seconds", Float, nullable=False),
    Column("backoff_max_seconds", Float, nullable=False),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("run_after", TS, nullable=False, server_default=text("now()")),
    Column("ttl_deadline", TS),
    Column("parent_id", Text),
    Column("fail_fast", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    Column("started_at", TS),
    Column("finished_at", TS),
    # The lease: the public lease id is "<task id>.<token>", so every lease call finds
    # its task by primary key and fences on the token (no extra index needed).
    Column("lease_token", UUID(as_uuid=False)),
    Column("lease_worker", Text),
    Column("lease_expires_at", TS),
    Column("lease_seconds", Float),
    Column("phase", Text, nullable=False, server_default=text("'execute'")),
    Column("progress", JSONB),
    Column("state", JSONB),
    Column("result", JSONB),
    Column("error", JSONB),
    Column("cancel_reason", Text),
    Column("superseded_by", Text),
    Column("supersedes", Text),
    # A blocked task waits for this task and all its descendants to be terminal.
    Column("blocked_on", Text),
    # The task whose state map this one's lease receives as previous_state (§6).
    Column("state_from", Text),
    # Children counters, kept by triggers (see migration 0002) on every status change.
    Column("children_total", Integer, nullable=False, server_default=text("0")),
    Column("children_live", Integer, nullable=False, server_default=text("0")),
    Column("children_completed", Integer, nullable=False, server_default=text("0")),
    Column("children_failed", Integer, nullable=False, server_default=text("0")),
    CheckConstraint(_in("status", ALL_STATUSES), name="status"),
    CheckConstraint("priority BETWEEN 0 AND 255", name="priority"),
    CheckConstraint("phase IN ('execute', 'finalize')", name="phase"),
)

# The claim index: only leasable rows, in lease order (priority, then enqueue order).
Index(
    "ix_tasks_claim",
    tasks.c.priority,
    tasks.c.seq,
    postgresql_where=text("status = 'pending'"),
)
# A dedup key is held by at most one live task per type. ON CONFLICT targets this index.
Index(
    "uq_tasks_live_dedup",
    tasks.c.type,
    tasks.c.dedup_key,
    unique=True,
    postgresql_where=text(f"dedup_key IS NOT NULL AND {LIVE_PREDICATE}"),
)
Index("ix_tasks_lease_expiry", tasks.c.lease_expires_at, postgresql_where=text(LEASED_PREDICATE))
Index("ix_tasks_scheduled", tasks.c.run_after, postgresql_where=text("status = 'scheduled'"))
Index(
    "ix_tasks_ttl",
    tasks.c.ttl_deadline,
    postgresql_where=text(f"ttl_deadline IS NOT NULL AND {UNSTARTED_PREDICATE}"),
)
# Group counts (concurrency limits, pause, GET /groups) look only at these rows.
Index(
    "ix_tasks_group_active",
    tasks.c.group_name,
    tasks.c.status,
    postgresql_where=text(
        "group_name IS NOT NULL AND status IN ('pending', 'paused', 'running', 'cancelling')"
    ),
)
Index("ix_tasks_parent", tasks.c.parent_id, postgresql_where=text("parent_id IS NOT NULL"))
Index("ix_tasks_blocked_on", tasks.c.blocked_on, postgresql_where=text("status = 'blocked'"))
# A new holder of a dedup key whose previous holder is still being cancelled waits for it.
Index(
    "ix_tasks_cancelling_key",
    tasks.c.type,
    tasks.c.dedup_key,
    postgresql_where=text("dedup_key IS NOT NULL AND status = 'cancelling'"),
)
# Tag queries: containment (tags @> '{"k": "v"}') through GIN; jsonb_path_ops indexes
# key/value pairs as one hash each, smaller and faster than the default opclass for @>.
Index(
    "ix_tasks_tags", tasks.c.tags, postgresql_using="gin", postgresql_ops={"tags": "jsonb_path_ops"}
)
# Listing by status in id order (keyset pagination).
Index("ix_tasks_status_id", tasks.c.status, tasks.c.id)
# Retention finds old terminal tasks without touching live ones.
Index("ix_tasks_finished", tasks.c.finished_at, postgresql_where=text(TERMINAL_PREDICATE))

groups = Table(
    "groups",
    metadata,
    Column("name", Text, primary_key=True),
    Column("max_concurrency", Integer),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    CheckConstraint("max_concurrency IS NULL OR max_concurrency >= 1", name="max_concurrency"),
)

# Every tag key ever used, so `GET /tags?prefix=` needs no scan of all tasks. Written in
# the submit statement (ON CONFLICT DO NOTHING: a known key costs one index probe). Keys
# are never removed: a key stays listed after retention prunes its last task, because
# deleting it could race a concurrent submit that brings the key back.
tag_keys = Table(
    "tag_keys",
    metadata,
    Column("key", Text, primary_key=True),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
)

# The outbox: one row per lifecycle change, written in the transaction that made the change.
events = Table(
    "events",
    metadata,
    # From the sequence events_id_seq, drawn by taskmill_next_event_id() only after the
    # writer holds a transaction id: what lets readers compute a safe horizon (migration
    # 0004, app/store/events.py).
    Column("id", BigInteger, primary_key=True, server_default=text("taskmill_next_event_id()")),
    Column("at", TS, nullable=False, server_default=text("now()")),
    # The writing transaction's id lets a reader stream only ids below every
    # still-running writer, so a resumed stream never skips a late commit.
    Column("txid", BigInteger, nullable=False, server_default=text("txid_current()")),
    Column("event", Text, nullable=False),
    Column("task_id", Text),
    Column("type", Text),
    Column("group_name", Text),
    Column("tags", JSONB),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)
Index("ix_events_task_id", events.c.task_id)
Index("ix_events_at", events.c.at)
