"""the lifecycle in the database: fence by generation, transition check, cancel phase

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:00:00.000000

Every task now carries the dedup key of its tree's outermost keyed task and that task's
id (its generation); an exclusion constraint refuses a lease to a second generation of a
key while another holds one (over inet hashes: see app/store/tables.py). A trigger refuses any status change the lifecycle table does
not have. A task whose execute phase ended (waiting, or queued for finalize) is cancelled
through a lease of its own with phase ``cancel``. The plpgsql is app/store/sql/0005_lifecycle.sql.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.store import sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TERMINAL = "('completed', 'failed', 'cancelled', 'superseded', 'expired')"
LEASED = "status IN ('running', 'cancelling') AND lease_expires_at IS NOT NULL"

CHECKS = {
    "ck_tasks_cancel_reason": "cancel_reason IN ('cancelled', 'superseded')",
    "ck_tasks_lease": "(lease_expires_at IS NULL OR status IN ('running', 'cancelling'))"
    " AND (status <> 'running' OR lease_expires_at IS NOT NULL)",
    "ck_tasks_cancelling": "status <> 'cancelling' OR (cancel_reason IS NOT NULL"
    " AND (lease_expires_at IS NOT NULL OR phase = 'cancel'))",
    "ck_tasks_cancel_phase": "phase <> 'cancel' OR status IN ('cancelling', 'cancelled', 'superseded')",
    "ck_tasks_finished": f"(finished_at IS NOT NULL) = (status IN {TERMINAL})",
    "ck_tasks_blocked": "status <> 'blocked' OR blocked_on IS NOT NULL",
    "ck_tasks_fence": "(fence_key IS NULL) = (fence_gen IS NULL)",
    "ck_tasks_children": "children_live >= 0 AND children_completed >= 0 AND children_failed >= 0"
    " AND children_live + children_completed + children_failed <= children_total",
}


def upgrade() -> None:
    op.add_column("tasks", sa.Column("fence_key", sa.Text(), nullable=True))
    op.add_column("tasks", sa.Column("fence_gen", sa.Text(), nullable=True))
    op.add_column(
        "tasks", sa.Column("cancel_deadline", postgresql.TIMESTAMP(timezone=True), nullable=True)
    )
    for statement in sql.statements("0005_lifecycle.sql"):
        op.execute(statement)
    # Rows written by earlier versions, made to satisfy the new constraints: completions
    # kept their lease's expiry, and a finished task always has its finish time.
    op.execute(
        "UPDATE tasks SET lease_expires_at = NULL"
        " WHERE lease_expires_at IS NOT NULL AND status NOT IN ('running', 'cancelling')"
    )
    op.execute(
        f"UPDATE tasks SET finished_at = updated_at WHERE finished_at IS NULL AND status IN {TERMINAL}"
    )
    op.execute(
        f"UPDATE tasks SET finished_at = NULL WHERE finished_at IS NOT NULL AND status NOT IN {TERMINAL}"
    )
    op.execute(
        "UPDATE tasks SET cancel_reason = 'cancelled' WHERE status = 'cancelling' AND cancel_reason IS NULL"
    )
    # The fence of every task not yet over: its outermost keyed ancestor (or itself).
    op.execute(
        f"""
WITH RECURSIVE up(id, anc, parent_id, type, dedup_key, depth) AS (
    SELECT t.id, t.id, t.parent_id, t.type, t.dedup_key, 0 FROM tasks t
    WHERE t.status NOT IN {TERMINAL}
    UNION ALL
    SELECT up.id, p.id, p.parent_id, p.type, p.dedup_key, up.depth + 1
    FROM up JOIN tasks p ON p.id = up.parent_id
), outermost AS (
    SELECT DISTINCT ON (id) id, anc, type || '/' || dedup_key AS fence_key
    FROM up WHERE dedup_key IS NOT NULL ORDER BY id, depth DESC
)
UPDATE tasks t SET fence_key = o.fence_key, fence_gen = o.anc FROM outermost o WHERE t.id = o.id
"""
    )
    op.drop_constraint(op.f("ck_tasks_phase"), "tasks", type_="check")
    op.create_check_constraint(
        op.f("ck_tasks_phase"), "tasks", "phase IN ('execute', 'finalize', 'cancel')"
    )
    for name, condition in CHECKS.items():
        op.create_check_constraint(op.f(name), "tasks", condition)
    op.execute(
        "ALTER TABLE tasks ADD CONSTRAINT ex_tasks_fence EXCLUDE USING gist"
        " ((taskmill_fence_ip(fence_key)) inet_ops WITH =,"
        " (taskmill_fence_ip(fence_gen)) inet_ops WITH <>)"
        f" WHERE (fence_key IS NOT NULL AND {LEASED})"
    )
    op.create_index(
        "uq_tasks_leased_key",
        "tasks",
        ["type", "dedup_key"],
        unique=True,
        postgresql_where=sa.text(f"dedup_key IS NOT NULL AND {LEASED}"),
    )
    op.drop_index("ix_tasks_lease_expiry", table_name="tasks")
    op.create_index(
        "ix_tasks_lease_expiry",
        "tasks",
        ["lease_expires_at"],
        postgresql_where=sa.text(LEASED),
    )
    op.create_index(
        "ix_tasks_claim_cancel",
        "tasks",
        ["priority", "seq"],
        postgresql_where=sa.text(
            "status = 'cancelling' AND lease_expires_at IS NULL AND children_live = 0"
        ),
    )
    op.create_index(
        "ix_tasks_cancelling_fence",
        "tasks",
        ["fence_key"],
        postgresql_where=sa.text("fence_key IS NOT NULL AND status = 'cancelling'"),
    )
    op.create_index(
        "ix_tasks_blocked_fence",
        "tasks",
        ["fence_key"],
        postgresql_where=sa.text("fence_key IS NOT NULL AND status = 'blocked'"),
    )


def downgrade() -> None:
    op.drop_constraint("ex_tasks_fence", "tasks")  # before the function it calls
    op.drop_index("uq_tasks_leased_key", table_name="tasks")
    for name in CHECKS:
        op.drop_constraint(op.f(name), "tasks", type_="check")
    op.drop_constraint(op.f("ck_tasks_phase"), "tasks", type_="check")
    op.execute("DROP TRIGGER taskmill_before_status ON tasks")
    op.execute("DROP TRIGGER taskmill_status_changed ON tasks")
    op.execute("DROP TRIGGER taskmill_child_inserted ON tasks")
    for name in (
        "taskmill_status_changed()",
        "taskmill_child_inserted()",
        "taskmill_unblock(tasks)",
        "taskmill_force(text)",
        "taskmill_cancel(text[], text, text, boolean)",
        "taskmill_events(text[], tasks, jsonb)",
        "taskmill_before_status()",
        "taskmill_transition_allowed(text, text)",
        "taskmill_fence_ip(text)",
        "taskmill_cancel_grace()",
    ):
        op.execute(f"DROP FUNCTION {name}")
    # Version 0002 knows no cancel phase: such a task ends as its reason says.
    op.execute(
        "UPDATE tasks SET status = CASE WHEN cancel_reason = 'superseded' THEN 'superseded'"
        " ELSE 'cancelled' END, finished_at = now(), phase = 'finalize'"
        " WHERE status = 'cancelling' AND phase = 'cancel'"
    )
    op.execute("UPDATE tasks SET phase = 'finalize' WHERE phase = 'cancel'")
    for statement in sql.statements("0002_tree.sql"):
        op.execute(statement)
    for name in ("ix_tasks_blocked_fence", "ix_tasks_cancelling_fence", "ix_tasks_claim_cancel"):
        op.drop_index(name, table_name="tasks")
    op.drop_index("ix_tasks_lease_expiry", table_name="tasks")
    op.create_index(
        "ix_tasks_lease_expiry",
        "tasks",
        ["lease_expires_at"],
        postgresql_where=sa.text("status IN ('running', 'cancelling')"),
    )
    op.create_check_constraint(op.f("ck_tasks_phase"), "tasks", "phase IN ('execute', 'finalize')")
    op.drop_column("tasks", "cancel_deadline")
    op.drop_column("tasks", "fence_gen")
    op.drop_column("tasks", "fence_key")
