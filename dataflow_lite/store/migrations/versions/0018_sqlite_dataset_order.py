"""SQLite knows from which dataset on ids follow creation order (``dataset_order``).

Datasets are shown newest first, by (``created_at``, ``id``). Where ids follow that order, a
page past the first of a user's one-word search is read from the word's FTS5 list in descending
row id (FTS5 seeks there, and skips a page's depth in its own list), instead of walking the
user's datasets newest first and looking each up in the list
(:func:`dataflow_lite.store.sqlite_pages.dataset_page`).

The one row of ``dataset_order`` holds ``ordered_from``: every dataset whose id is at least that
is newer than every dataset with a smaller id, and they follow each other in id order. Beside it,
the newest ``created_at`` and the largest id ever written (bounds: a deleted dataset leaves them
as they were). A dataset written with a smaller id or an older time than one before it (an
import of an unsorted file, a rebuild from the destination, a clock set back), or whose time or
id changes, moves ``ordered_from`` past every id so far: the datasets after it start a new
ordered run. A dataset the server creates takes its time under the write lock, so its id and
its time follow the others'. The triggers read no other table, so a bulk load without the
dataset table's indexes (``sqlite_load``) keeps them firing, 0.7 µs a row.

A page read from a user's words list trusts the list (revision 0012: each full-text row names
its owner), so two changes by hand now reach the full-text row, as 0014's triggers make them
reach the values: a dataset deleted takes its row with it, and a dataset given another creator
gives its row that owner (``db rebuild-search`` mends any row left from before).

A later migration that recreates ``dataset`` in batch mode must create them again
(:data:`TRIGGERS`). Nothing is done on PostgreSQL, whose word lists are not read in id order.

Revision ID: 0018_sqlite_dataset_order
Revises: 0017_sqlite_word_prefixes
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0018_sqlite_dataset_order"
down_revision = "0017_sqlite_word_prefixes"
branch_labels = None
depends_on = None

_RESTART = "max(last_id, new.id) + 1"
_BOUNDS = "newest_at = max(newest_at, new.created_at), last_id = max(last_id, new.id)"
TRIGGERS = {
    # ``>=``: an id again after the largest was deleted is still larger than every other.
    "dataset_order_insert": (
        "AFTER INSERT ON dataset BEGIN UPDATE dataset_order SET ordered_from = CASE "
        "WHEN new.id >= last_id AND new.created_at >= newest_at THEN ordered_from "
        f"ELSE {_RESTART} END, {_BOUNDS}; END"
    ),
    # No column list: SQLite does not count ``SET rowid = ...`` as an update of ``id``.
    "dataset_order_update": (
        "AFTER UPDATE ON dataset "
        "WHEN new.id IS NOT old.id OR new.created_at IS NOT old.created_at "
        f"BEGIN UPDATE dataset_order SET ordered_from = {_RESTART}, {_BOUNDS}; END"
    ),
    "dataset_text_dataset_delete": (
        "AFTER DELETE ON dataset BEGIN DELETE FROM dataset_text WHERE rowid = old.id; END"
    ),
    # The owner as ``search_sql.owner_text`` writes it.
    "dataset_text_owner_update": (
        "AFTER UPDATE OF creator_id ON dataset WHEN new.creator_id IS NOT old.creator_id BEGIN "
        "UPDATE dataset_text SET owner = CAST(new.creator_id AS TEXT) WHERE rowid = new.id; END"
    ),
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    bind.exec_driver_sql(
        "CREATE TABLE dataset_order (ordered_from INTEGER NOT NULL, "
        "newest_at VARCHAR NOT NULL, last_id INTEGER NOT NULL)"
    )
    # What the insert trigger would have kept, had the datasets been written in id order (one
    # pass over the table: about a second at a million datasets).
    ordered_from, newest_at, last_id = 0, "", 0
    for ident, created_at in bind.exec_driver_sql(
        "SELECT id, CAST(created_at AS TEXT) FROM dataset ORDER BY id"
    ):
        if created_at < newest_at:
            ordered_from = ident + 1
        newest_at, last_id = max(newest_at, created_at), ident
    bind.exec_driver_sql(
        "INSERT INTO dataset_order VALUES (?, ?, ?)", (ordered_from, newest_at, last_id)
    )
    for name, body in TRIGGERS.items():
        bind.exec_driver_sql(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in TRIGGERS:
            bind.exec_driver_sql(f"DROP TRIGGER {name}")
        bind.exec_driver_sql("DROP TABLE dataset_order")
