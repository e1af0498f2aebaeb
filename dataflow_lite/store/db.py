"""The catalog's database: one engine per app, one session per request.

SQLite runs in WAL mode with foreign keys on and a busy timeout. Requests that may write open
their transaction with ``BEGIN IMMEDIATE``, so concurrent gunicorn workers queue for the write
lock instead of failing with "database is locked" when a read transaction tries to upgrade.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, g, request
from sqlalchemy import Connection, Engine, event, text
from sqlmodel import Session, SQLModel, create_engine

from dataflow_lite.store import models  # noqa: F401  (registers the tables)

SEARCH_TABLE = "dataset_text"


def make_engine(path: Path, busy_timeout_ms: int) -> Engine:
    """Create the engine for the SQLite file at ``path`` with the pragmas the server relies on."""
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # SQLAlchemy, not the sqlite3 module, decides when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit that answered 201 survives a power cut (NORMAL may roll it back in WAL).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def create_schema(engine: Engine, lock_path: Path) -> None:
    """Create the tables that are missing; safe when several workers start at once."""
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        SQLModel.metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(
                text(
                    f"CREATE VIRTUAL TABLE IF NOT EXISTS {SEARCH_TABLE} USING fts5("
                    "body, tokenize = 'unicode61 remove_diacritics 2')"
                )
            )


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits when the block ends and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session


def get_session() -> Session:
    """The current request's session; reads begin deferred, everything else immediate."""
    if "db_session" not in g:
        from flask import current_app

        engine: Engine = current_app.extensions["dataflow_lite.engine"]
        if request.method in ("GET", "HEAD", "OPTIONS"):
            engine = engine.execution_options(sqlite_begin="DEFERRED")
        g.db_session = Session(engine, expire_on_commit=False)
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask, database: Path, busy_timeout_ms: int) -> Engine:
    """Open the catalog for ``app``, creating its tables if needed."""
    engine = make_engine(database, busy_timeout_ms)
    create_schema(engine, database.with_name(database.name + ".lock"))
    app.extensions["dataflow_lite.engine"] = engine
    app.teardown_appcontext(_close_session)
    return engine
