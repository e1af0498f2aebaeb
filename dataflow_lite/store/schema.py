"""The catalog's schema version: which Alembic revision a database is at, and upgrading it.

The migrations live in :mod:`dataflow_lite.store.migrations` and are configured here in code,
so an installed package needs no ``alembic.ini``. A new, empty database is upgraded to the head
when an instance opens it; an older one is refused (:class:`SchemaOutOfDate`) until
``dataflow-lite db upgrade`` has upgraded it, copying an SQLite file aside first (on PostgreSQL,
whose schema changes are transactional, a failed upgrade changes nothing, and copies are
``pg_dump``'s work). A database made before migrations existed (tables, no ``alembic_version``)
is stamped as the baseline, then upgraded.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, inspect
from sqlmodel import SQLModel

from dataflow_lite.store import db, models  # noqa: F401  (models registers the tables)
from dataflow_lite.store.db import Database
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001_baseline"
UPGRADE_COMMAND = "dataflow-lite db upgrade"
DEFAULT_BUSY_TIMEOUT_MS = 30_000


class SchemaError(Exception):
    """The database's schema is not one this code can serve."""


class SchemaOutOfDate(SchemaError):
    """The database is older than this code: ``dataflow-lite db upgrade`` brings it to head."""


class SchemaNewerThanCode(SchemaError):
    """The database was upgraded by a newer dataflow-lite than the one running."""


class UpgradeFailed(SchemaError):
    """A migration failed; its transaction was rolled back, so the database is unchanged."""


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: from which revision (None: none yet) to which, and the copy."""

    from_revision: str | None
    to_revision: str
    #: The copy of the database made first; None when there was nothing to copy or to upgrade.
    backup: Path | None


def alembic_config(connection: Any = None) -> Config:
    """Alembic's configuration for the catalog's migrations, on ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def target_metadata() -> MetaData:
    """The models' tables, which the head revision must create (autogenerate compares them)."""
    return SQLModel.metadata


#: What no model describes: the full-text tables (and their shadow tables, and the tokens SQLite
#: keeps for searched words, 0017), SQLite's record of where ids follow creation order (0018),
#: and the expression indexes of typed metadata values (revision 0006), PostgreSQL's trigram
#: indexes (0007) and tokens (0015), and the indexes of values by key and dataset, each
#: catalog's own (0012, 0013).
UNMODELLED_TABLES = (SEARCH_TABLE, "file_name_text", "dataset_order")
UNMODELLED_INDEXES = (
    "ix_metadatavalue_key",
    "ix_metadatavalue_number",
    "ix_metadatavalue_text",
    "ix_metadatavalue_key_value",
    "ix_datasetfile_name_trgm",
    "ix_dataset_text_body_trgm",
    "ix_dataset_text_tokens",
)


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Leave out the full-text tables and the expression indexes, which no model describes."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(UNMODELLED_TABLES)
    return not (type_ == "index" and name in UNMODELLED_INDEXES)


def head() -> str:
    """The revision this code needs (the migrations have exactly one head)."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"the migrations have {len(heads)} heads: {', '.join(heads)}")
    return heads[0]


def current(engine: Engine) -> str | None:
    """The revision recorded in the database; None when it has none (new, or pre-migrations)."""
    with db.reading(engine).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def has_tables(engine: Engine) -> bool:
    """Whether the database holds any table at all (a new database holds none)."""
    with db.reading(engine).connect() as connection:
        return bool(inspect(connection).get_table_names())


def status(
    database: Database | Path, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
) -> tuple[str | None, bool]:
    """The revision of ``database`` and whether it holds tables; changes nothing."""
    engine = _migration_engine(database, busy_timeout_ms)
    try:
        return current(engine), has_tables(engine)
    finally:
        engine.dispose()


def describe(revision: str | None, tables: bool) -> str:
    """A revision as people read it, including the two states without one."""
    if revision is not None:
        return revision
    return "none (made before migrations)" if tables else "none (empty)"


def check(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDate` unless the database is at the head revision."""
    revision, wanted = current(engine), head()
    if revision == wanted:
        return
    if revision is not None and revision not in _known_revisions():
        raise SchemaNewerThanCode(
            f"the database is at schema {revision}, which this dataflow-lite does not know "
            f"(its newest is {wanted}): run the newer dataflow-lite that upgraded it"
        )
    found = (
        f"is at schema {revision}" if revision is not None else "was made before schema migrations"
    )
    raise SchemaOutOfDate(
        f"the database {found}; this dataflow-lite needs {wanted}: "
        f"run '{UPGRADE_COMMAND}' (it backs up the database first)"
    )


def _known_revisions() -> set[str]:
    scripts = ScriptDirectory.from_config(alembic_config())
    return {script.revision for script in scripts.walk_revisions()}


@contextmanager
def _locked(database: Database, engine: Engine) -> Iterator[None]:
    """Hold the lock that serialises schema changes of ``database`` across processes and hosts.

    For an SQLite file it is a file lock beside it; on PostgreSQL, a session advisory lock.
    """
    if database.is_sqlite:
        with open(database.path.with_name(database.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        return
    with db.reading(engine).connect() as connection:
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({db.SCHEMA_LOCK})")
        connection.commit()
        try:
            yield
        finally:
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({db.SCHEMA_LOCK})")
            connection.commit()


def _migration_engine(database: Database | Path, busy_timeout_ms: int) -> Engine:
    """An engine like the catalog's, but with foreign keys off for the copies batch mode makes."""
    return db.make_engine(database, busy_timeout_ms, foreign_keys=False)


def backup(database: Path, label: str) -> Path:
    """Copy ``database`` beside itself with SQLite's online backup; return the copy's path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = database.with_name(f"{database.name}.{stamp}.{label}.backup")
    number = 1
    while target.exists():
        number += 1
        target = database.with_name(f"{database.name}.{stamp}.{label}.{number}.backup")
    copy_database(database, target)
    return target


def copy_database(database: Path, target: Path) -> None:
    """A consistent copy of ``database`` at ``target`` (which must not exist), checked whole.

    SQLite's online backup copies in one step whatever WAL frames are pending, while the server
    goes on; the copy is written beside ``target`` and renamed into place only once SQLite's
    integrity check passed, so a failed copy leaves nothing under ``target``'s name.
    """
    partial = target.with_name(f".{target.name}.partial")
    source = sqlite3.connect(database)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
            (verdict,) = copy.execute("PRAGMA integrity_check").fetchone()
        finally:
            copy.close()
        if verdict != "ok":
            raise UpgradeFailed(
                f"the copy of {database} failed SQLite's integrity check: {verdict}"
            )
        # A hard link, unlike a rename, never replaces a file that appeared meanwhile.
        os.link(partial, target)
    finally:
        source.close()
        partial.unlink(missing_ok=True)


def upgrade(
    database: Database | Path,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    revision: str = "head",
) -> Upgrade:
    """Upgrade ``database`` to ``revision``, copying an SQLite file aside first.

    A new or empty database is simply created at the target; one without ``alembic_version``
    but with tables is stamped as the baseline first. Every step runs in one transaction, under
    the database's schema lock, so workers starting at once wait and then find it done.
    """
    database = Database.of(database)
    if database.is_sqlite:
        database.path.parent.mkdir(parents=True, exist_ok=True)
    engine = _migration_engine(database, busy_timeout_ms)
    try:
        with _locked(database, engine):
            before, tables = current(engine), has_tables(engine)
            target = head() if revision == "head" else revision
            if before == target:
                return Upgrade(before, target, None)
            if before is not None and before not in _known_revisions():
                check(engine)  # raises SchemaNewerThanCode
            # An empty database has nothing worth keeping; PostgreSQL's is pg_dump's to copy.
            keep = tables and database.is_sqlite
            copy = backup(database.path, before or "unversioned") if keep else None
            _migrate(engine, stamp_baseline=tables and before is None, revision=target)
            return Upgrade(before, target, copy)
    finally:
        engine.dispose()


def _migrate(engine: Engine, *, stamp_baseline: bool, revision: str) -> None:
    with engine.connect() as connection:
        try:
            with connection.begin():
                config = alembic_config(connection)
                if stamp_baseline:
                    command.stamp(config, BASELINE)
                command.upgrade(config, revision)
                # PostgreSQL checks foreign keys itself; SQLite's are off while migrating.
                if connection.dialect.name == "sqlite":
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise UpgradeFailed(
                            f"the upgrade would break a foreign key: {tuple(broken)}"
                        )
        except SchemaError:
            raise
        except Exception as error:
            raise UpgradeFailed(f"the upgrade failed and changed nothing: {error}") from error


def prepare(engine: Engine, database: Database) -> None:
    """Create a new, empty catalog at the head revision; raise SchemaError for an older one."""
    if not has_tables(engine):
        upgrade(database)
    check(engine)
