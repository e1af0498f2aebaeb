"""Resumable uploads (tus): one row per file arriving in pieces.

Revision ID: 0005_resumable_uploads
Revises: 0004_user_session_generation
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_resumable_uploads"
down_revision = "0004_user_session_generation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resumableupload",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("relative_path", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("content_type", sa.String(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("offset", sa.Integer(), nullable=False),
        sa.Column("upload_metadata", sa.String(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["file_id"], ["datasetfile.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "relative_path", "name"),
    )
    op.create_index("ix_resumableupload_user_id", "resumableupload", ["user_id"])
    op.create_index("ix_resumableupload_dataset_id", "resumableupload", ["dataset_id"])
    op.create_index("ix_resumableupload_expires_at", "resumableupload", ["expires_at"])


def downgrade() -> None:
    op.drop_table("resumableupload")
