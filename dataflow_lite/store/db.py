"""The catalog's database: the engine, and one unit of work per use case.

SQLite runs in WAL mode with foreign keys on and a busy timeout. Units of work that may write
open their transaction with ``BEGIN IMMEDIATE``, so concurrent gunicorn workers queue for the
write lock instead of failing with "database is locked" when a read transaction tries to upgrade.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, event
from sqlmodel import Session, create_engine

from dataflow_lite.store import models, sqlite_words

log = logging.getLogger(__name__)


def make_engine(path: Path, busy_timeout_ms: int, *, foreign_keys: bool = True) -> Engine:
    """Create the engine for the SQLite file at ``path`` with the pragmas the server relies on.

    Migrations turn ``foreign_keys`` off: a batch recreate drops a table, and with foreign keys
    on that DROP would delete the rows pointing at it.
    """
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # SQLAlchemy, not the sqlite3 module, decides when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit that answered 201 survives a power cut (NORMAL may roll it back in WAL).
        cursor.execute("PRAGMA synchronous=FULL")
        # Set outside any transaction: SQLite ignores it inside one.
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()
        sqlite_words.register(dbapi_connection)  # search checks a row's words with it

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


class UnauditedChange(AssertionError):
    """A use case changed the catalog without recording it in the audit trail: a bug."""


class UnitOfWork:
    """One transaction of a use case: its session, and what to do once it has committed."""

    def __init__(self, session: Session, *, write: bool = True) -> None:
        self.session = session
        #: Whether the transaction holds the write lock (the audit trail appends only then).
        self.write = write
        #: Set when rows other than audit events were added, changed or deleted.
        self.changed = False
        #: Set by the audit trail when this transaction recorded an event.
        self.audited = False
        self._after_commit: list[Callable[[], None]] = []

    def _note_changes(self, session: Session, _context: object, _instances: object) -> None:
        # A row set to the values it had is not a change (``session.dirty`` counts it).
        modified = [row for row in session.dirty if session.is_modified(row)]
        touched = (*session.new, *modified, *session.deleted)
        if any(not isinstance(row, models.AuditEvent) for row in touched):
            self.changed = True

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the transaction has committed (wake a worker, say); never if not."""
        self._after_commit.append(action)


@contextmanager
def unit_of_work(
    engine: Engine, *, write: bool = True, audited: bool = True
) -> Iterator[UnitOfWork]:
    """A transaction that commits when the block ends and rolls back on error.

    Writes take SQLite's write lock at once (``BEGIN IMMEDIATE``), so concurrent writers queue
    instead of failing; reads (``write=False``) begin deferred and never take it. A write that
    changes rows must record an audit event, or it raises UnauditedChange and rolls back;
    ``audited=False`` is for the server's own bookkeeping (the queue's progress, a key's
    last use, failed-login counts).
    """
    if not write:
        engine = engine.execution_options(sqlite_begin="DEFERRED")
    with Session(engine, expire_on_commit=False) as session:
        work = UnitOfWork(session, write=write)
        if write and audited:
            event.listen(session, "before_flush", work._note_changes)
        with session.begin():
            yield work
            session.flush()
            if work.changed and not work.audited:
                raise UnauditedChange("a change was not recorded in the audit trail")
    for action in work._after_commit:
        try:
            action()
        except Exception:  # committed is committed: the queue's sweep finds what was not woken
            log.exception("after commit")


@contextmanager
def session_scope(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """A session for the server's own bookkeeping (the queue): not audited."""
    with unit_of_work(engine, write=write, audited=False) as work:
        yield work.session
