"""Each full-text row names its dataset's owner, so a user's words are counted inside FTS5.

``dataset_text`` gains an ``owner`` column (the creator's id as text). On SQLite the FTS5 table
is built again with it (a virtual table takes no new column): a user's ``op3`` is then the FTS5
query ``{body} : ("op3"*) AND {owner} : "2"``, counted to 10,001 without a dataset row or a
call into Python per candidate. Words are always confined to ``body``, so no search can name
the owner column. On PostgreSQL the plain table gets the column too, so that the rows are
written the same way on both (its search does not read it).

A dataset never changes owner; its row is written again whenever the dataset changes.

SQLite also gets ``ix_metadatavalue_key_value`` (key, dataset, value): checking one dataset's
value of a key (``Sample-Temperature>300`` beside other terms, a facet's value) then reads the
index alone, not the value's row as well (20,000 checks: 41 ms instead of 64 at a million).

Revision ID: 0012_text_owner
Revises: 0011_statement_key_counts
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0012_text_owner"
down_revision = "0011_statement_key_counts"
branch_labels = None
depends_on = None

_TOKENIZE = "tokenize = 'unicode61 remove_diacritics 2'"


def _rebuild_sqlite(columns: str, select: str) -> None:
    bind = op.get_bind()
    bind.exec_driver_sql("DROP TABLE IF EXISTS dataset_text_rebuilt")
    bind.exec_driver_sql(
        f"CREATE VIRTUAL TABLE dataset_text_rebuilt USING fts5({columns}, {_TOKENIZE})"
    )
    bind.exec_driver_sql(
        f"INSERT INTO dataset_text_rebuilt (rowid, {columns}) {select} ORDER BY t.rowid"
    )
    # One b-tree per token instead of the segments a million inserts leave: fewer to merge
    # on every query.
    bind.exec_driver_sql(
        "INSERT INTO dataset_text_rebuilt (dataset_text_rebuilt) VALUES ('optimize')"
    )
    bind.exec_driver_sql("DROP TABLE dataset_text")
    bind.exec_driver_sql("ALTER TABLE dataset_text_rebuilt RENAME TO dataset_text")


_KEY_VALUE = (
    "CREATE INDEX ix_metadatavalue_key_value ON metadatavalue (field_name, dataset_id, value)"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql(_KEY_VALUE)
        # A row without a dataset (none should exist) keeps its words and has no owner.
        _rebuild_sqlite(
            "body, owner",
            "SELECT t.rowid, t.body, coalesce(CAST(d.creator_id AS TEXT), '') "
            "FROM dataset_text AS t LEFT JOIN dataset AS d ON d.id = t.rowid",
        )
        return
    bind.exec_driver_sql("ALTER TABLE dataset_text ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
    bind.exec_driver_sql(
        "UPDATE dataset_text AS t SET owner = d.creator_id::text FROM dataset AS d "
        "WHERE d.id = t.rowid"
    )
    bind.exec_driver_sql("ALTER TABLE dataset_text ALTER COLUMN owner DROP DEFAULT")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("DROP INDEX IF EXISTS ix_metadatavalue_key_value")
        _rebuild_sqlite("body", "SELECT t.rowid, t.body FROM dataset_text AS t")
        return
    bind.exec_driver_sql("ALTER TABLE dataset_text DROP COLUMN owner")
