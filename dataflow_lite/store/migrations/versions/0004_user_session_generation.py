"""A session generation per user: logging out or a new password ends the user's web sessions.

Each web session cookie carries ``user.session_generation`` as it was at login; a logout or a
password change raises it, so a session cookie kept or copied from before stops working at once
rather than when it expires. Existing users start at 0 (their current cookies carry none and
end, which asks them to log in once more).

Revision ID: 0004_user_session_generation
Revises: 0003_audit_trail_and_text_values
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_user_session_generation"
down_revision = "0003_audit_trail_and_text_values"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.add_column(
            sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.drop_column("session_generation")
