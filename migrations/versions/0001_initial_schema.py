"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 08:05:19.686820
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The queue-position sequence (autogenerate does not emit sequences).
    op.execute(sa.schema.CreateSequence(sa.Sequence("task_seq")))
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "txid", sa.BigInteger(), server_default=sa.text("txid_current()"), nullable=False
        ),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Text(), nullable=True),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("group_name", sa.Text(), nullable=True),
        sa.Column("tags", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_at", "events", ["at"], unique=False)
    op.create_index("ix_events_task_id", "events", ["task_id"], unique=False)
    op.create_table(
        "groups",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=True),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "max_concurrency IS NULL OR max_concurrency >= 1",
            name=op.f("ck_groups_max_concurrency"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_groups")),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column(
            "seq", sa.BigInteger(), server_default=sa.text("nextval('task_seq')"), nullable=False
        ),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("dedup_key", sa.Text(), nullable=True),
        sa.Column("group_name", sa.Text(), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("exp_read_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("exp_write_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("exp_net_rx_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("exp_net_tx_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("act_read_bytes", sa.BigInteger(), nullable=True),
        sa.Column("act_write_bytes", sa.BigInteger(), nullable=True),
        sa.Column("act_net_rx_bytes", sa.BigInteger(), nullable=True),
        sa.Column("act_net_tx_bytes", sa.BigInteger(), nullable=True),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("backoff", sa.Text(), nullable=False),
        sa.Column("backoff_base_seconds", sa.Float(), nullable=False),
        sa.Column("backoff_max_seconds", sa.Float(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "run_after",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ttl_deadline", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("parent_id", sa.Text(), nullable=True),
        sa.Column("fail_fast", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("finished_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("lease_token", sa.UUID(as_uuid=False), nullable=True),
        sa.Column("lease_worker", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("lease_seconds", sa.Float(), nullable=True),
        sa.Column("phase", sa.Text(), server_default=sa.text("'execute'"), nullable=False),
        sa.Column("progress", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("state", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("superseded_by", sa.Text(), nullable=True),
        sa.Column("supersedes", sa.Text(), nullable=True),
        sa.CheckConstraint("phase IN ('execute', 'finalize')", name=op.f("ck_tasks_phase")),
        sa.CheckConstraint(
            "status IN ('pending', 'scheduled', 'blocked', 'running', 'waiting', 'paused', 'cancelling', 'completed', 'failed', 'cancelled', 'superseded', 'expired')",
            name=op.f("ck_tasks_status"),
        ),
        sa.CheckConstraint("priority BETWEEN 0 AND 255", name=op.f("ck_tasks_priority")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(
        "ix_tasks_claim",
        "tasks",
        ["priority", "seq"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_tasks_group_active",
        "tasks",
        ["group_name", "status"],
        unique=False,
        postgresql_where=sa.text(
            "group_name IS NOT NULL AND status IN ('pending', 'paused', 'running', 'cancelling')"
        ),
    )
    op.create_index(
        "ix_tasks_lease_expiry",
        "tasks",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('running', 'cancelling')"),
    )
    op.create_index(
        "ix_tasks_parent",
        "tasks",
        ["parent_id"],
        unique=False,
        postgresql_where=sa.text("parent_id IS NOT NULL"),
    )
    op.create_index(
        "ix_tasks_scheduled",
        "tasks",
        ["run_after"],
        unique=False,
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.create_index("ix_tasks_status_id", "tasks", ["status", "id"], unique=False)
    op.create_index(
        "ix_tasks_ttl",
        "tasks",
        ["ttl_deadline"],
        unique=False,
        postgresql_where=sa.text(
            "ttl_deadline IS NOT NULL AND status IN ('pending', 'scheduled', 'paused', 'blocked')"
        ),
    )
    op.create_index(
        "uq_tasks_live_dedup",
        "tasks",
        ["type", "dedup_key"],
        unique=True,
        postgresql_where=sa.text(
            "dedup_key IS NOT NULL AND status IN ('pending', 'scheduled', 'blocked', 'running', 'waiting', 'paused')"
        ),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_tasks_live_dedup",
        table_name="tasks",
        postgresql_where=sa.text(
            "dedup_key IS NOT NULL AND status IN ('pending', 'scheduled', 'blocked', 'running', 'waiting', 'paused')"
        ),
    )
    op.drop_index(
        "ix_tasks_ttl",
        table_name="tasks",
        postgresql_where=sa.text(
            "ttl_deadline IS NOT NULL AND status IN ('pending', 'scheduled', 'paused', 'blocked')"
        ),
    )
    op.drop_index("ix_tasks_status_id", table_name="tasks")
    op.drop_index(
        "ix_tasks_scheduled", table_name="tasks", postgresql_where=sa.text("status = 'scheduled'")
    )
    op.drop_index(
        "ix_tasks_parent", table_name="tasks", postgresql_where=sa.text("parent_id IS NOT NULL")
    )
    op.drop_index(
        "ix_tasks_lease_expiry",
        table_name="tasks",
        postgresql_where=sa.text("status IN ('running', 'cancelling')"),
    )
    op.drop_index(
        "ix_tasks_group_active",
        table_name="tasks",
        postgresql_where=sa.text(
            "group_name IS NOT NULL AND status IN ('pending', 'paused', 'running', 'cancelling')"
        ),
    )
    op.drop_index(
        "ix_tasks_claim", table_name="tasks", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("tasks")
    op.drop_table("groups")
    op.drop_index("ix_events_task_id", table_name="events")
    op.drop_index("ix_events_at", table_name="events")
    op.drop_table("events")
    op.execute(sa.schema.DropSequence(sa.Sequence("task_seq")))
