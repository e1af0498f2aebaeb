"""SQLite keeps the whole tokens each bare word searched begins (``dataset_text_prefix``).

FTS5 answers a prefix (``"op3"*``) by merging the whole lists of every token it begins before
reading an entry; asked as those tokens OR'ed together, it seeks in each list instead
(:mod:`dataflow_lite.store.sqlite_prefixes`, which fills the table as words are searched). The
table starts empty. Nothing is done on PostgreSQL, whose index answers a prefix as it answers a
token.

Revision ID: 0017_sqlite_word_prefixes
Revises: 0016_postgresql_spelled_text
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0017_sqlite_word_prefixes"
down_revision = "0016_postgresql_spelled_text"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql(
            "CREATE TABLE dataset_text_prefix (prefix TEXT NOT NULL PRIMARY KEY, tokens TEXT) "
            "WITHOUT ROWID"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("DROP TABLE dataset_text_prefix")
