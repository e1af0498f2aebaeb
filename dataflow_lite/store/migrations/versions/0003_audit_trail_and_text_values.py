"""The audit trail's table, and metadata values kept as TEXT so that floats stay floats.

``auditevent`` holds one hash-chained row per change the services make. It uses SQLite's
AUTOINCREMENT, so an id is never reused: removing the newest rows leaves a gap that ``audit
verify`` finds. ``user_id`` has no foreign key, so removing a user rewrites no event.

``metadatavalue.value`` was declared ``JSON``, which SQLite gives numeric affinity: the JSON
text ``2.0`` was stored as the integer 2. Declared TEXT, the JSON text is kept as written. The
column is rebuilt in batch mode; values already stored keep what SQLite made of them (a float
stored as an integer stays the integer).

Revision ID: 0003_audit_trail_and_text_values
Revises: 0002_constraints_added_later
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_audit_trail_and_text_values"
down_revision = "0002_constraints_added_later"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metadatavalue") as batch:
        batch.alter_column("value", type_=sa.Text(), existing_type=sa.JSON(), nullable=True)
    op.create_table(
        "auditevent",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(), nullable=True),
        sa.Column("via", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("object_type", sa.String(), nullable=False),
        sa.Column("object_id", sa.String(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("prev_sha256", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_auditevent_at", "auditevent", ["at"])
    op.create_index("ix_auditevent_user_id", "auditevent", ["user_id"])
    op.create_index("ix_auditevent_username", "auditevent", ["username"])
    op.create_index("ix_auditevent_object", "auditevent", ["object_type", "object_id"])


def downgrade() -> None:
    op.drop_table("auditevent")
    with op.batch_alter_table("metadatavalue") as batch:
        batch.alter_column("value", type_=sa.JSON(), existing_type=sa.Text(), nullable=True)
