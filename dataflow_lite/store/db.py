"""The catalog's database: where it is, the engine, and one unit of work per use case.

The catalog is an SQLite file in the instance folder by default, or a PostgreSQL database named
by a URL. Either way writers take turns: SQLite runs in WAL mode with foreign keys on and a busy
timeout, and units of work that may write open their transaction with ``BEGIN IMMEDIATE``, so
concurrent gunicorn workers queue for the write lock instead of failing with "database is
locked" when a read transaction tries to upgrade; on PostgreSQL such a transaction first takes
one transaction-scoped advisory lock, so the code above (the audit trail's hash chain, a
dataset's folder) sees the same one-writer-at-a-time catalog on both. The transfer queue's own
bookkeeping (``write=ROWS``) skips that lock on PostgreSQL and locks the rows it changes.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import URL, Connection, Engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlmodel import Session, create_engine

from dataflow_lite.settings import ConfigError
from dataflow_lite.store import models, sqlite_words

log = logging.getLogger(__name__)

#: The execution option that marks a read-only transaction (it never waits for writers).
WRITES = "dataflow_writes"
#: ``write=ROWS``: the queue's own bookkeeping, which locks on PostgreSQL only the transfer
#: rows it reads ``FOR UPDATE`` rather than the whole catalog, so claims and progress on several
#: hosts go on beside the API's writes. On SQLite it takes the one write lock like any write.
ROWS: Literal["rows"] = "rows"
#: PostgreSQL advisory lock keys: one for writing the catalog, one for changing its schema.
WRITE_LOCK, SCHEMA_LOCK = 0x64666C01, 0x64666C02
BACKENDS = ("sqlite", "postgresql")
#: How much of an SQLite catalog each connection maps into memory (address space, not RAM);
#: SQLite lowers it to its build's limit (often 2 GiB).
MMAP_BYTES = 1 << 34


class DatabaseUrlError(ConfigError):
    """The ``database`` setting names no database this server can use."""


@dataclass(frozen=True)
class Database:
    """Where the catalog is: an SQLite file (``path``) or a PostgreSQL server's database."""

    url: URL

    @classmethod
    def from_setting(cls, instance: Path, value: str) -> Database:
        """The ``database`` setting: a file relative to the instance folder, or a URL."""
        if "://" not in value:
            return cls.file(instance / value)
        try:
            url = make_url(value)
        except ArgumentError as error:
            raise DatabaseUrlError(f"database: {value!r} is not a database URL") from error
        if url.get_backend_name() not in BACKENDS:
            raise DatabaseUrlError(
                f"database: {url.get_backend_name()!r} is not supported; use an SQLite file or "
                "postgresql+psycopg://user@host/name"
            )
        if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
            url = url.set(drivername="postgresql+psycopg")
        return cls(url)

    @classmethod
    def file(cls, path: Path) -> Database:
        """The SQLite database in the file at ``path``."""
        return cls(URL.create("sqlite", database=str(path)))

    @classmethod
    def of(cls, database: Database | Path) -> Database:
        """``database`` itself, or the SQLite file at that path."""
        return database if isinstance(database, Database) else cls.file(database)

    @property
    def is_sqlite(self) -> bool:
        """Whether the catalog is an SQLite file (one host; copies made with its backup API)."""
        return self.url.get_backend_name() == "sqlite"

    @property
    def path(self) -> Path:
        """The SQLite file (only for an SQLite catalog)."""
        if not self.is_sqlite or not self.url.database:
            raise ValueError(f"{self} is not an SQLite file")
        return Path(self.url.database)

    def exists(self) -> bool:
        """Whether the catalog is there: the SQLite file exists (a server's database: always)."""
        return self.path.is_file() if self.is_sqlite else True

    def __str__(self) -> str:
        return str(self.path) if self.is_sqlite else self.url.render_as_string(hide_password=True)


def make_engine(
    database: Database | Path, busy_timeout_ms: int, *, foreign_keys: bool = True
) -> Engine:
    """Create the engine for ``database`` with the settings the server relies on.

    Migrations on SQLite turn ``foreign_keys`` off: a batch recreate drops a table, and with
    foreign keys on that DROP would delete the rows pointing at it. ``busy_timeout_ms`` is how
    long a writer waits for the one before it (SQLite's busy timeout, PostgreSQL's
    ``lock_timeout``).
    """
    database = Database.of(database)
    if not database.is_sqlite:
        return _postgresql_engine(database.url, busy_timeout_ms)
    engine = create_engine(database.url, connect_args={"check_same_thread": False})

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
        # Search reads index and table pages all over a large catalog: mapped, a page the OS
        # already caches costs a memory read rather than a read() call into a 2 MB page cache.
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.close()
        sqlite_words.register(dbapi_connection)  # search checks a row's words with it

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        writes = connection.get_execution_options().get(WRITES, True)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN DEFERRED")

    return engine


def _postgresql_engine(url: URL, busy_timeout_ms: int) -> Engine:
    # pre_ping: a connection the server or a proxy closed while idle is replaced, not an error.
    # jit off: the catalog's statements are short, and a search whose estimate passed
    # jit_above_cost spent 50 ms compiling to save less than that (EXPLAIN at a million).
    # synchronize_seqscans off: a search that counts along a table from its start (its oldest
    # rows) took up to 60 ms more when it joined another scan of it midway.
    options = (
        f"-c lock_timeout={int(busy_timeout_ms)} -c TimeZone=UTC -c jit=off "
        "-c synchronize_seqscans=off"
    )
    engine = create_engine(url, pool_pre_ping=True, connect_args={"options": options})

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        if connection.get_execution_options().get(WRITES, True) is True:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")

    return engine


def follow_explicit_ids(connection: Connection, table: str) -> None:
    """After rows were inserted with ids of their own, make new rows of ``table`` number on
    from the highest id. SQLite does so by itself; a PostgreSQL sequence knows only the ids it
    gave out."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f'GREATEST((SELECT max(id) FROM "{table}"), 1))'
        )


def refresh_statistics(engine: Engine, tables: Sequence[str]) -> None:
    """After a bulk load, have PostgreSQL's planner see the new rows (``ANALYZE``).

    Without it, the planner keeps the sizes it saw before the load until autovacuum comes by
    (it may be minutes) and may, for a while, scan a million rows where an index answers. SQLite
    is left alone: its search names the indexes it walks, and ``ANALYZE`` there reads every index.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE " + ", ".join(f'"{name}"' for name in tables))
            connection.commit()


def compact(engine: Engine, table: str) -> None:
    """On PostgreSQL, write ``table`` anew after many of its rows were written again, and
    analyse it (``VACUUM FULL``): the old versions would otherwise leave its pages half empty
    after autovacuum, and reading a word's list along them slow (see
    ``0016_postgresql_spelled_text``). It holds the table's lock while it runs (17 s for
    ``dataset_text`` at a million datasets): searches wait for it, and it waits for a running
    search at most ``busy_timeout_ms`` (``lock_timeout``). SQLite is left alone."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(f'VACUUM (FULL, ANALYZE) "{table}"')


@contextmanager
def driver_errors(engine: Engine) -> Iterator[None]:
    """The errors of the driver's own cursors (bulk loads go round SQLAlchemy) raised as
    SQLAlchemy's, as every other statement's are: a full disk ends a command in one line."""
    dbapi = engine.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as error:
        raise DBAPIError.instance(None, None, error, dbapi.Error) from error


def reading(engine: Engine) -> Engine:
    """``engine`` for transactions that only read: they never wait for, or block, a writer."""
    return engine.execution_options(**{WRITES: False})


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
    engine: Engine, *, write: bool | Literal["rows"] = True, audited: bool = True
) -> Iterator[UnitOfWork]:
    """A transaction that commits when the block ends and rolls back on error.

    Writes take SQLite's write lock at once (``BEGIN IMMEDIATE``), so concurrent writers queue
    instead of failing; reads (``write=False``) begin deferred and never take it. A write that
    changes rows must record an audit event, or it raises UnauditedChange and rolls back;
    ``audited=False`` is for the server's own bookkeeping (the queue's progress, a key's
    last use, failed-login counts); ``write=ROWS`` is for the queue's claims and progress.
    """
    if write is not True:
        engine = engine.execution_options(**{WRITES: write})
    with Session(engine, expire_on_commit=False) as session:
        work = UnitOfWork(session, write=write is True)
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
def session_scope(engine: Engine, *, write: bool | Literal["rows"] = True) -> Iterator[Session]:
    """A session for the server's own bookkeeping (the queue): not audited."""
    with unit_of_work(engine, write=write, audited=False) as work:
        yield work.session
