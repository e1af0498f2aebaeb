"""Several hosts: the keys' fingerprint (a host with other keys is refused), and which host
staged each transfer's file (only that host's workers run it).

Revision ID: 0008_instance_keys
Revises: 0006_search_indexes
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_instance_keys"
down_revision = "0007_postgresql_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instancekeys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.add_column("transfer", sa.Column("staged_on", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transfer") as batch:
        batch.drop_column("staged_on")
    op.drop_table("instancekeys")
