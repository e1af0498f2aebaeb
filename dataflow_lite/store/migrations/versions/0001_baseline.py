"""Baseline: the catalog exactly as release 7b9c32f created it, full-text table included.

Databases made before migrations existed hold these tables without an ``alembic_version``:
:func:`dataflow_lite.store.schema.upgrade` stamps them with this revision instead of running it.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from dataflow_lite.store.migrations import baseline

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    baseline.metadata().create_all(bind)
    baseline.create_search_table(bind)


def downgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(f"DROP TABLE IF EXISTS {baseline.SEARCH_TABLE}")
    baseline.metadata().drop_all(bind)
