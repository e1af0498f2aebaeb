"""A bulk load into an empty SQLite catalog, its tables' indexes built after their rows.

Inserted rows land in every secondary index of their table at once, and the insert triggers
(the file-name index, metadata key counts, the values' owner) fire once per row: at a million
datasets, that was half of SQLite's work in an import. :func:`indexes_after` drops the loaded
tables' secondary indexes and their insert triggers for the length of one transaction, then
builds the indexes again from the rows and does, once for all of them, what each trigger would
have done. Schema changes are transactional in SQLite: other connections read the catalog
as it was, indexes and all, until the commit, and a failure rolls everything back.

Only for a catalog with no dataset: the statements redo the triggers' work for every row of
the tables, and an index built again reads every row, not only the new ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

from sqlalchemy import Engine
from sqlalchemy.engine.interfaces import DBAPICursor

from dataflow_lite.store.sqlite_search import FILE_TABLE, rebuild_statements

#: What each insert trigger on the loaded tables does, done once for all their rows (nothing:
#: the loaded rows already hold what it would write).
TRIGGERS_IN_BULK: dict[str, tuple[str, ...]] = {
    # revision 0006: the trigram index of file names (FTS5 reads it again from ``datasetfile``)
    "datasetfile_name_insert": rebuild_statements(FILE_TABLE),
    # revision 0006: how many values each owner has under each key, per value type
    "metadatakey_insert": (
        "INSERT INTO metadatakey (creator_id, field_name, value_type, datasets) "
        "SELECT d.creator_id, v.field_name, coalesce(json_type(v.value), 'null'), count(*) "
        "FROM metadatavalue AS v JOIN dataset AS d ON d.id = v.dataset_id "
        "WHERE true GROUP BY 1, 2, 3 "  # WHERE: SQLite's upsert after a SELECT needs one
        "ON CONFLICT (creator_id, field_name, value_type) "
        "DO UPDATE SET datasets = datasets + excluded.datasets",
    ),
    # revision 0014: a value names its dataset's creator as its owner. The loader's values
    # already do (a test compares a load in one go with one whose triggers fired).
    "metadatavalue_owner_insert": (),
    # revision 0014: the same, for values inserted before their dataset (the loader's come after)
    "dataset_owner_insert": (),
}
#: The insert triggers that stay and fire for each loaded row, as they read no other table and
#: need no index (revision 0018: where ids follow creation order, 0.7 µs a row).
TRIGGERS_KEPT = ("dataset_order_insert",)


@contextmanager
def indexes_after(db: DBAPICursor, tables: Sequence[str]) -> Iterator[None]:
    """Load ``tables`` in the block without their secondary indexes and insert triggers;
    build and redo them when it ends. ``db`` is a cursor in the transaction of a write, in a
    catalog that had no dataset when it began.

    A trigger not in :data:`TRIGGERS_IN_BULK` stays and fires for each row as usual.
    """
    # Outside a transaction each DROP would commit on its own, and a failure lose the indexes.
    if not cast(sqlite3.Cursor, db).connection.in_transaction:
        raise RuntimeError("indexes_after needs a cursor inside a transaction")
    created = []
    for table in tables:
        db.execute(f'PRAGMA index_list("{table}")')
        for _, name, unique, origin, _ in db.fetchall():
            if origin == "c" and not unique:  # made by CREATE INDEX, not a key or a constraint
                created.append(name)
    triggers = _sql_of(db, "trigger", list(TRIGGERS_IN_BULK))
    indexes = _sql_of(db, "index", created)
    for kind, dropped in (("TRIGGER", triggers), ("INDEX", indexes)):
        for name in dropped:
            db.execute(f'DROP {kind} "{name}"')
    yield
    for sql in (*indexes.values(), *triggers.values()):
        db.execute(sql)
    for name in triggers:
        for statement in TRIGGERS_IN_BULK[name]:
            db.execute(statement)


def _sql_of(db: DBAPICursor, kind: str, names: list[str]) -> dict[str, str]:
    """The statements that made the objects of ``kind`` named ``names`` that exist."""
    marks = ", ".join("?" * len(names))
    db.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = ? AND name IN ({marks})", (kind, *names)
    )
    return dict(db.fetchall())


def truncate_log(engine: Engine) -> None:
    """Give back the disk that a large transaction's pages took in the write-ahead log, which
    otherwise keeps its size until the catalog's last connection closes (a checkpoint that
    empties it; it waits ``busy_timeout_ms`` at most for readers still using the log)."""
    connection = engine.raw_connection()
    try:
        connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
