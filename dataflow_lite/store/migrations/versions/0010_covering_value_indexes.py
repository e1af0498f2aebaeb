"""The typed value indexes of SQLite carry the dataset id, so a term's list reads no table rows.

``key>N``, ``key:N..M`` and ``key:value`` list their datasets from ``ix_metadatavalue_number``
and ``ix_metadatavalue_text``; without the dataset id in the index each entry cost a lookup of
its ``metadatavalue`` row (30,000 entries: 34 ms instead of about 2 ms at a million datasets).
PostgreSQL's indexes of the same names (revision 0007) are left as they are.

Revision ID: 0010_covering_value_indexes
Revises: 0009_hosts
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0010_covering_value_indexes"
down_revision = "0009_hosts"
branch_labels = None
depends_on = None

_NUMBER = (
    "(field_name, json_extract(value, '$'){tail}) WHERE json_type(value) IN ('integer', 'real')"
)
_TEXT = "(field_name, lower(json_extract(value, '$')){tail}) WHERE json_type(value) = 'text'"


def _rebuild(tail: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for name, columns in (("number", _NUMBER), ("text", _TEXT)):
        bind.exec_driver_sql(f"DROP INDEX IF EXISTS ix_metadatavalue_{name}")
        bind.exec_driver_sql(
            f"CREATE INDEX ix_metadatavalue_{name} ON metadatavalue {columns.format(tail=tail)}"
        )


def upgrade() -> None:
    _rebuild(", dataset_id")


def downgrade() -> None:
    _rebuild("")
