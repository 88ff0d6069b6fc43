"""tags: GIN index for containment queries, and the registry of tag keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 08:50:22.995836
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tag_keys",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_tag_keys")),
    )
    op.create_index(
        "ix_tasks_tags",
        "tasks",
        ["tags"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    # Keys of the tasks that already exist.
    op.execute("INSERT INTO tag_keys (key) SELECT DISTINCT jsonb_object_keys(tags) FROM tasks")


def downgrade() -> None:
    op.drop_index(
        "ix_tasks_tags",
        table_name="tasks",
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    op.drop_table("tag_keys")
