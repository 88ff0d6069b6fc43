"""The schema, defined once as SQLAlchemy Core tables.

Alembic migrations create exactly this (a test compares them). Terminal tasks stay in
``tasks``: every hot index is partial on the live statuses, so finished rows cost the
claim path nothing (see the README's design section for the measurement).

The constraints make impossible states fail loudly: the lifecycle's statuses and phases
(``app/domain/lifecycle.py``), leases only on running and cancelling tasks, and the fence:
at most one generation of a dedup key holds leases at any moment.
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
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, UUID, ExcludeConstraint

from ..domain.lifecycle import (
    ALL,
    CANCEL_CLAIMABLE_PREDICATE,
    LEASED_PREDICATE,
    LIVE_PREDICATE,
    TERMINAL_PREDICATE,
    UNSTARTED_PREDICATE,
    Phase,
    Reason,
    sql_in,
)

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
    # The fence: every task of a tree whose outermost keyed task is K carries K's
    # "<type>/<dedup key>" and K's id (its generation). See ex_tasks_fence.
    Column("fence_key", Text),
    Column("fence_gen", Text),
    # A revoked lease (and a cancel-phase lease) ends by this instant whatever heartbeats say.
    Column("cancel_deadline", TS),
    # Children counters, kept by triggers (app/store/sql/) on every status change.
    Column("children_total", Integer, nullable=False, server_default=text("0")),
    Column("children_live", Integer, nullable=False, server_default=text("0")),
    Column("children_completed", Integer, nullable=False, server_default=text("0")),
    Column("children_failed", Integer, nullable=False, server_default=text("0")),
    CheckConstraint(sql_in("status", ALL), name="status"),
    CheckConstraint("priority BETWEEN 0 AND 255", name="priority"),
    CheckConstraint(sql_in("phase", Phase), name="phase"),
    CheckConstraint(sql_in("cancel_reason", Reason), name="cancel_reason"),
    # A lease exists only on a running or cancelling task, and every running task has one.
    CheckConstraint(
        "(lease_expires_at IS NULL OR status IN ('running', 'cancelling'))"
        " AND (status <> 'running' OR lease_expires_at IS NOT NULL)",
        name="lease",
    ),
    # A cancelling task knows why; unleased, it awaits its cancel-phase lease.
    CheckConstraint(
        "status <> 'cancelling' OR (cancel_reason IS NOT NULL"
        " AND (lease_expires_at IS NOT NULL OR phase = 'cancel'))",
        name="cancelling",
    ),
    CheckConstraint(
        f"phase <> 'cancel' OR {sql_in('status', {'cancelling', 'cancelled', 'superseded'})}",
        name="cancel_phase",
    ),
    CheckConstraint(f"(finished_at IS NOT NULL) = ({TERMINAL_PREDICATE})", name="finished"),
    CheckConstraint("status <> 'blocked' OR blocked_on IS NOT NULL", name="blocked"),
    CheckConstraint("(fence_key IS NULL) = (fence_gen IS NULL)", name="fence"),
    CheckConstraint(
        "children_live >= 0 AND children_completed >= 0 AND children_failed >= 0"
        " AND children_live + children_completed + children_failed <= children_total",
        name="children",
    ),
    # The central promise, kept by the database whatever a code path does: no two
    # generations of one dedup key hold leases at once. A lease for a task of another
    # generation than the leased ones of its key (descendants included) is refused.
    # "Same key, other generation" needs = and <> in one GiST index; text has no GiST
    # operator class without btree_gist, which the embedded server lacks, but inet's
    # built-in one has both: taskmill_fence_ip() writes a 128-bit hash of the text as an
    # IPv6 address (app/store/sql/0005_lifecycle.sql).
    ExcludeConstraint(
        (literal_column("(taskmill_fence_ip(fence_key)) inet_ops"), "="),
        (literal_column("(taskmill_fence_ip(fence_gen)) inet_ops"), "<>"),
        using="gist",
        where=text(f"fence_key IS NOT NULL AND {LEASED_PREDICATE}"),
        name="ex_tasks_fence",
    ),
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
# One leased task per dedup key also inside a tree (the fence covers roots; this, keys
# of children too).
Index(
    "uq_tasks_leased_key",
    tasks.c.type,
    tasks.c.dedup_key,
    unique=True,
    postgresql_where=text(f"dedup_key IS NOT NULL AND {LEASED_PREDICATE}"),
)
Index("ix_tasks_lease_expiry", tasks.c.lease_expires_at, postgresql_where=text(LEASED_PREDICATE))
# Cancelled tasks whose on_cancel awaits a lease (phase cancel): claimed before pending work.
Index(
    "ix_tasks_claim_cancel",
    tasks.c.priority,
    tasks.c.seq,
    postgresql_where=text(CANCEL_CLAIMABLE_PREDICATE),
)
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
# A blocked task waits for the cancelling tasks of its key's other generations, and of its
# own key: found by these two when it is submitted, and when one of them ends.
Index(
    "ix_tasks_cancelling_key",
    tasks.c.type,
    tasks.c.dedup_key,
    postgresql_where=text("dedup_key IS NOT NULL AND status = 'cancelling'"),
)
Index(
    "ix_tasks_cancelling_fence",
    tasks.c.fence_key,
    postgresql_where=text("fence_key IS NOT NULL AND status = 'cancelling'"),
)
Index(
    "ix_tasks_blocked_fence",
    tasks.c.fence_key,
    postgresql_where=text("fence_key IS NOT NULL AND status = 'blocked'"),
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
