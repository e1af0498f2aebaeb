"""The raw peers of `bench/search.py`: the same catalog rows loaded with the bare driver, no checks.

Each reads the bench's JSONL file and writes datasets, metadata values, files and one full-text
row per dataset into an instance that ``init`` made (so its indexes and triggers are the ones
the import meets): sqlite3 ``INSERT``s of many rows each on SQLite, the indexes built after
the rows in one transaction as the import does into an empty catalog, psycopg ``COPY`` on
PostgreSQL. What
``dataflow-lite import`` does beyond this (checking every line, the audit trail, statistics)
is what the ratio shows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataflow_lite.services.imports import LOAD_CACHE_KIB
from dataflow_lite.store import pg_words
from dataflow_lite.store.sqlite_load import indexes_after

#: Datasets per transaction, as ``dataflow-lite import`` commits them.
CHUNK = 10_000


def flat(node: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Flattened metadata names (``Sample-Id``) and their values."""
    for key, value in node.items():
        name = f"{prefix}-{key}" if prefix else key
        if isinstance(value, dict):
            yield from flat(value, name)
        else:
            yield name, value


def rows(source: Path, users: dict[str, int], endpoint: str) -> tuple[list, list, list, list]:
    """The datasets, values, files and full-text rows of ``source``, ids from 1, times in UTC."""
    datasets, values, files, texts = [], [], [], []
    for ident, line in enumerate(source.open("rb"), start=1):
        item = json.loads(line)
        created = datetime.strptime(item["created_at"], "%Y-%m-%dT%H:%M:%SZ")
        owner = users[item["creator"]]
        datasets.append((ident, item["name"], owner, None, endpoint,
                         f"folder/{ident}", created))  # fmt: skip
        pairs = list(flat(item["metadata"]))
        values += [(ident, name, json.dumps(value), None, owner) for name, value in pairs]
        files += [(ident, f["name"], f["relative_path"], False, f["size"], None, f["sha256"],
                   created) for f in item["files"]]  # fmt: skip
        words = [item["name"]]
        for name, value in pairs:
            words += (name, str(value))
        words += [f["name"] for f in item["files"]]
        texts.append((ident, "\n".join(words), str(owner)))
    return datasets, values, files, texts


#: Each table a load fills, with its columns, in the order of the rows ``rows`` builds.
TABLES = (
    ("dataset", "id, name, creator_id, instrument_id, endpoint_id, folder, created_at"),
    ("metadatavalue", "dataset_id, field_name, value, metadata_field_id, owner_id"),
    ("datasetfile", "dataset_id, name, relative_path, is_directory, file_length, file_type, "
     "sha256, created_at"),
    ("dataset_text", "rowid, body, owner"),
)  # fmt: skip


def many_rows(db: sqlite3.Connection, table: str, columns: str, rows: list) -> None:
    """Insert ``rows`` with as many rows per ``INSERT`` as 999 parameters allow, as the import
    does: one ``INSERT`` per row (``executemany``) costs SQLite's FTS5 trigger of file names far
    more (the README's bench), and a peer slower than it need be would flatter the ratio."""
    width = columns.count(",") + 1
    per_statement = 999 // width
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), per_statement):
        part = rows[start : start + per_statement]
        db.execute(
            f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(part))}",
            [value for row in part for value in row],
        )


def sqlite_load(database: Path, source: Path) -> float:
    """Seconds a plain sqlite3 load of the rows of ``source`` takes (parsing included)."""
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA mmap_size={1 << 34}")  # as the server's own connections map the file
    db.execute(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")  # as the import's connection
    began = time.perf_counter()
    users = dict(db.execute("SELECT username, id FROM user"))
    endpoint = db.execute("SELECT id FROM endpoint").fetchone()[0]
    datasets, values, files, texts = rows(source, users, endpoint)
    # SQLAlchemy stores SQLite times as this text; the bench's times are whole seconds.
    datasets = [(*row[:6], row[6].strftime("%Y-%m-%d %H:%M:%S.000000")) for row in datasets]
    files = [(*row[:7], row[7].strftime("%Y-%m-%d %H:%M:%S.000000")) for row in files]
    db.execute("BEGIN IMMEDIATE")
    # Into an empty catalog, as the import: the indexes built after the rows.
    with indexes_after(db.cursor(), [table for table, _ in TABLES[:3]]):
        for (table, columns), loaded in zip(TABLES, (datasets, values, files, texts), strict=True):
            many_rows(db, table, columns, loaded)
    db.execute("COMMIT")
    seconds = time.perf_counter() - began
    db.close()
    return seconds


def postgresql_load(url: str, source: Path) -> float:
    """Seconds a plain psycopg ``COPY`` of the rows of ``source`` takes (parsing included)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
        began = time.perf_counter()
        users = dict(db.execute('SELECT username, id FROM "user"').fetchall())
        endpoint = db.execute("SELECT id FROM endpoint").fetchone()[0]  # type: ignore[index]
        datasets, values, files, texts = rows(source, users, endpoint)
        datasets = [(*row[:6], row[6].replace(tzinfo=UTC)) for row in datasets]
        files = [(*row[:7], row[7].replace(tzinfo=UTC)) for row in files]
        # PostgreSQL's full-text row is its tokens, spelled (0016) and listed (0015).
        texts = [(ident, *pg_words.text_row(body, int(owner))) for ident, body, owner in texts]
        names = [*TABLES[:-1], ("dataset_text", ", ".join(("rowid", *pg_words.TEXT_COLUMNS)))]
        tables = [
            (*table, table_rows)
            for table, table_rows in zip(names, (datasets, values, files, texts), strict=True)
        ]
        # One transaction per CHUNK datasets, as the import commits: the key counts' trigger
        # updates the same few rows for every value, and within one transaction each update
        # leaves a row version the next must step over.
        done = [0] * len(tables)
        for upto in range(CHUNK, len(datasets) + CHUNK, CHUNK):
            for number, (table, columns, table_rows) in enumerate(tables):
                with db.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    while done[number] < len(table_rows) and table_rows[done[number]][0] <= upto:
                        copy.write_row(table_rows[done[number]])
                        done[number] += 1
            db.commit()
        db.execute("SELECT setval(pg_get_serial_sequence('dataset', 'id'), max(id)) FROM dataset")
        db.commit()
        return time.perf_counter() - began
