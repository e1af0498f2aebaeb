"""PostgreSQL keeps each full-text row's text as its tokens, so a phrase is found as FTS5 finds it.

``dataset_text.body`` becomes the tokens FTS5 would make of the text (lowercased, without
diacritics), each after a space and the last followed by one
(:func:`dataflow_lite.store.pg_words.spelled`). A phrase, and every word of a row too long to
list its tokens, was a regular expression over ``lower(body)``, whose letters and case follow
the database's locale and keep diacritics: ``"café au"`` did not find ``Café au lait``, as it
does on SQLite. It is now ``LIKE`` over the tokens. Each row's ``tokens`` (0015) are made again,
by this release's tokenizer, which asks SQLite's (``µ`` is ``μ`` to FTS5, as it was not to the
rules written before). The table is written anew rather than updated, so it and its GIN
index hold no empty pages (52 s at a million datasets). Nothing is done on SQLite.

A downgrade keeps the spelled text and the tokens of this release (the text as written is not
kept anywhere else): the release of 0015 finds ASCII words in them as before, but reads about
17,000 other characters otherwise (``µm`` is ``μm`` here), and misses words holding them until
``search.reindex`` writes each dataset's row again.

Revision ID: 0016_postgresql_spelled_text
Revises: 0015_postgresql_owner_lists
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from dataflow_lite.store import pg_words, sqlite_words

revision = "0016_postgresql_spelled_text"
down_revision = "0015_postgresql_owner_lists"
branch_labels = None
depends_on = None

BATCH = 10_000
_COLUMNS = (
    "rowid BIGINT PRIMARY KEY, body TEXT NOT NULL, owner TEXT NOT NULL, tokens tsvector NOT NULL"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # The table is written anew, in the order of ids (the oldest datasets first, as they were
    # loaded: ``pg_pages`` samples them), rather than each row updated: the old versions would
    # leave half the table and of its GIN index empty pages, which a word read along the table
    # or through its owner's list then reads through (op3 at a million: 230 ms, against 27).
    bind.exec_driver_sql("ALTER TABLE dataset_text RENAME TO dataset_text_old")
    bind.exec_driver_sql("ALTER INDEX dataset_text_pkey RENAME TO dataset_text_old_pkey")
    bind.exec_driver_sql("DROP INDEX ix_dataset_text_tokens")
    bind.exec_driver_sql(f"CREATE TABLE dataset_text ({_COLUMNS})")
    last = 0
    while rows := bind.exec_driver_sql(
        "SELECT rowid, body, owner FROM dataset_text_old WHERE rowid > %(last)s "
        f"ORDER BY rowid LIMIT {BATCH}",
        {"last": last},
    ).all():
        found = [sqlite_words.tokens(body) for _, body, _ in rows]
        bind.exec_driver_sql(
            "INSERT INTO dataset_text (rowid, body, owner, tokens) SELECT v.rowid, v.body, "
            "v.owner, CAST(v.tokens AS tsvector) FROM unnest(%(ids)s::bigint[], "
            "%(bodies)s::text[], %(owners)s::text[], %(tokens)s::text[]) "
            "AS v (rowid, body, owner, tokens)",
            {
                "ids": [row[0] for row in rows],
                "bodies": [pg_words.spelled(tokens) for tokens in found],
                "owners": [row[2] for row in rows],
                "tokens": [
                    pg_words.vector(tokens, row[2]) for tokens, row in zip(found, rows, strict=True)
                ],
            },
        )
        last = rows[-1][0]
    bind.exec_driver_sql("DROP TABLE dataset_text_old")
    bind.exec_driver_sql("CREATE INDEX ix_dataset_text_tokens ON dataset_text USING gin (tokens)")
    bind.exec_driver_sql("ANALYZE dataset_text")


def downgrade() -> None:
    pass
