"""supersede and children: blocked successors, state handoff, child counters and cascades

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 08:38:04.160939
"""

import sqlalchemy as sa
from alembic import op

from app.store import sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# The plpgsql of this version (cascades, child counters, blocked successors) lives in
# app/store/sql/0002_tree.sql, unchanged since; migration 0005 replaces it.


def upgrade() -> None:
    op.add_column("tasks", sa.Column("blocked_on", sa.Text(), nullable=True))
    op.add_column("tasks", sa.Column("state_from", sa.Text(), nullable=True))
    op.add_column(
        "tasks",
        sa.Column("children_total", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "tasks",
        sa.Column("children_live", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "tasks",
        sa.Column("children_completed", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "tasks",
        sa.Column("children_failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_tasks_blocked_on",
        "tasks",
        ["blocked_on"],
        unique=False,
        postgresql_where=sa.text("status = 'blocked'"),
    )
    op.create_index(
        "ix_tasks_cancelling_key",
        "tasks",
        ["type", "dedup_key"],
        unique=False,
        postgresql_where=sa.text("dedup_key IS NOT NULL AND status = 'cancelling'"),
    )
    for statement in sql.statements("0002_tree.sql"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER taskmill_status_changed ON tasks")
    op.execute("DROP TRIGGER taskmill_child_inserted ON tasks")
    for name in (
        "taskmill_status_changed()",
        "taskmill_child_inserted()",
        "taskmill_cancel_children(text)",
        "taskmill_unblock_for(text)",
        "taskmill_subtree_clear(text)",
        "taskmill_event(text, tasks, jsonb)",
    ):
        op.execute(f"DROP FUNCTION {name}")
    op.drop_index(
        "ix_tasks_cancelling_key",
        table_name="tasks",
        postgresql_where=sa.text("dedup_key IS NOT NULL AND status = 'cancelling'"),
    )
    op.drop_index(
        "ix_tasks_blocked_on", table_name="tasks", postgresql_where=sa.text("status = 'blocked'")
    )
    op.drop_column("tasks", "children_failed")
    op.drop_column("tasks", "children_completed")
    op.drop_column("tasks", "children_live")
    op.drop_column("tasks", "children_total")
    op.drop_column("tasks", "state_from")
    op.drop_column("tasks", "blocked_on")
