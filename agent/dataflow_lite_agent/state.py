"""The agent's own database (SQLite, in its state folder): the datasets it made, and a receipt for
every file it took up, which is also the queue of files still to send.

Everything the agent promises rests on this file surviving a reboot or a kill -9: each change is
committed before the step it records is relied on (an upload's URL before its first byte is
sent, "uploaded" only once the server has the whole file).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    place TEXT PRIMARY KEY,        -- what the dataset is for: a push's sources, a watched folder
    server TEXT NOT NULL,
    dataset_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    source TEXT PRIMARY KEY,       -- the file's absolute path on this computer
    server TEXT NOT NULL,
    dataset_id INTEGER NOT NULL,
    target TEXT NOT NULL,          -- its path inside the dataset
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,          -- computed here; over tus, as it is sent
    hashed_at TEXT NOT NULL,
    upload_url TEXT,               -- the tus upload, once made
    uploaded_at TEXT,              -- the server has every byte
    destination TEXT,              -- where the server put it
    verified_at TEXT,              -- the server verified the same sha256 at the destination
    error TEXT,                    -- the last thing that went wrong, for people
    deleted_at TEXT,               -- removed here by clean
    UNIQUE (server, dataset_id, target)
);
"""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Receipt:
    source: str
    server: str
    dataset_id: int
    target: str
    size: int
    mtime_ns: int
    sha256: str
    hashed_at: str
    upload_url: str | None = None
    uploaded_at: str | None = None
    destination: str | None = None
    verified_at: str | None = None
    error: str | None = None
    deleted_at: str | None = None

    @property
    def verified(self) -> bool:
        return self.verified_at is not None


class State:
    """The agent's database, safe to use from the threads that send files."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "agent.sqlite3"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, *values: object) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, values).fetchall()

    def dataset(self, place: str, server: str) -> int | None:
        rows = self._run(
            "SELECT dataset_id FROM datasets WHERE place = ? AND server = ?", place, server
        )
        return rows[0]["dataset_id"] if rows else None

    def remember_dataset(self, place: str, server: str, dataset_id: int) -> None:
        self._run("INSERT OR REPLACE INTO datasets VALUES (?, ?, ?)", place, server, dataset_id)

    def receipt(self, source: str) -> Receipt | None:
        rows = self._run("SELECT * FROM receipts WHERE source = ?", source)
        return Receipt(**dict(rows[0])) if rows else None

    def _transaction(self, statements: list[tuple[str, list[tuple[object, ...]]]]) -> None:
        """Run each statement over its rows in one transaction: one commit (one sync of the
        journal, a few ms) however many rows, where a commit per row costs that much each."""
        if not any(rows for _, rows in statements):
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def keep(self, receipt: Receipt) -> None:
        """Record ``receipt`` (a new file, or one that changed before it was sent)."""
        self.keep_many([receipt])

    def keep_many(self, receipts: list[Receipt]) -> None:
        """Record ``receipts`` in one transaction."""
        names = list(Receipt.__dataclass_fields__)
        sql = (
            f"INSERT OR REPLACE INTO receipts ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        self._transaction([(sql, [tuple(getattr(r, name) for name in names) for r in receipts])])

    def update(self, source: str, **values: object) -> None:
        sets = ", ".join(f"{name} = ?" for name in values)
        self._run(f"UPDATE receipts SET {sets} WHERE source = ?", *values.values(), source)

    def update_many(self, sources: list[str], **values: object) -> None:
        """Set the same ``values`` on the receipts of ``sources``, in one transaction."""
        self.update_each({source: values for source in sources})

    def update_each(self, changes: dict[str, dict[str, object]]) -> None:
        """Set each receipt's own values (by source), all in one transaction."""
        by_names: dict[tuple[str, ...], list[tuple[object, ...]]] = {}
        for source, values in changes.items():
            by_names.setdefault(tuple(values), []).append((*values.values(), source))
        self._transaction([
            (f"UPDATE receipts SET {', '.join(f'{n} = ?' for n in names)} WHERE source = ?", rows)
            for names, rows in by_names.items()
            if names
        ])  # fmt: skip

    def receipts(self, under: Path | None = None) -> Iterator[Receipt]:
        """Every receipt, or those of files below ``under``, in path order."""
        for row in self._run("SELECT * FROM receipts ORDER BY source"):
            receipt = Receipt(**dict(row))
            if under is None or Path(receipt.source).is_relative_to(under):
                yield receipt

    def unverified(self, server: str) -> list[Receipt]:
        """Receipts of files sent to ``server`` whose verification is still awaited."""
        rows = self._run(
            "SELECT * FROM receipts WHERE server = ? AND uploaded_at IS NOT NULL "
            "AND verified_at IS NULL ORDER BY source",
            server,
        )
        return [Receipt(**dict(row)) for row in rows]
