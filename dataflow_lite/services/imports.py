"""Bulk import: a JSONL file of datasets (one per line) recorded in the catalog, no byte moved.

For facilities moving an existing catalog (DataFlow, SciCat exports) into dataflow-lite: the
files are already at the destination, and the import records them there. Every line is
checked and its rows prepared (:mod:`.import_lines`; a large file's lines in a process per
CPU), keeping in memory only what the checks across lines need (a digest per dataset, to find
duplicates) and the bad lines. When any line is bad nothing is imported and the refusal names
the line numbers, unless ``skip_bad`` leaves those lines out. The rows go in with bulk
``INSERT``s (datasets, metadata values, files and folders, one full-text row each), and each
``CHUNK`` datasets record one audit event naming their ids (one per dataset would cost more
than the import itself, see the README). How they are committed depends on the catalog:

- One that holds datasets: the checked rows wait in a private temporary file until every line
  is checked (at a million datasets they took 2.8 GB of memory, and checking slowed as they
  piled up), then go in transactions of ``CHUNK`` datasets. Each holds SQLite's write lock for
  about a second, so the server's own writes wait for one chunk, never for the whole file.
- An empty SQLite catalog: one transaction, the rows loaded as their lines are checked, the
  indexes built after them (:mod:`dataflow_lite.store.sqlite_load`), and rolled back if a line
  is bad. The server's writes wait for all of it, unless ``chunked`` asks for the chunks.
"""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
import tempfile
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, func
from sqlmodel import Session, col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit, endpoints, user_settings
from dataflow_lite.services.errors import Invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.import_lines import Checker, Prepared, Preparer, checked
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.services.progress import NoProgress, Progress
from dataflow_lite.store import search, sqlite_load
from dataflow_lite.store.db import (
    UnitOfWork,
    driver_errors,
    follow_explicit_ids,
    refresh_statistics,
    unit_of_work,
)
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE
from dataflow_lite.store.models import Dataset, Endpoint

#: Datasets per transaction: about a second of the write lock here (see the module docstring).
CHUNK = 10_000
#: A file at least this large is checked by one process per CPU beside this one (a fork each,
#: which inherits the checker); a smaller one in this process, where starting them would cost
#: more than they save.
PARALLEL_BYTES = 32 << 20
#: How many bad lines a refusal names; the count says how many more there were.
NAMED_BAD_LINES = 20
#: Parameters in one statement: SQLite builds older than 3.32 take at most 999.
VARIABLES_PER_STATEMENT = 999
#: Folders looked up per query when a chunk checks which of its folders are taken.
FOLDERS_PER_QUERY = 900
#: SQLite's page cache for the load's connection, in KiB (2 MiB by default). Each chunk's
#: values land all over the typed value indexes: with the default cache, pages already
#: changed are written out to the WAL mid-transaction and read back from it (WAL pages are
#: not memory-mapped). A quarter of a GiB made the load of a million datasets 10-15 % faster
#: (see the README's bench); the pages are taken only as the load touches them, and go with
#: the connection when the load ends.
LOAD_CACHE_KIB = 256 << 10

#: Each table the load fills, with its columns, in the order of the rows built for it (and,
#: after them, the full-text rows).
TABLES = (
    ("dataset", "id, name, creator_id, instrument_id, endpoint_id, folder, created_at"),
    ("metadatavalue", "dataset_id, field_name, value, metadata_field_id, owner_id"),
    ("datasetfile", "dataset_id, name, relative_path, is_directory, file_length, file_type, "
     "sha256, created_at"),
)  # fmt: skip
LOADED_TABLES = [table for table, _ in TABLES]


@dataclass
class ImportReport:
    """What an import did."""

    endpoint: str
    lines: int = 0
    imported: int = 0
    #: (line number, what is wrong) of each line left out.
    bad: list[tuple[int, str]] = field(default_factory=list)
    first_id: int | None = None
    last_id: int | None = None
    sha256: str = ""


def _lines(source: Iterable[bytes], digest: Any) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of ``source`` with their numbers (from 1), hashed on the way."""
    for number, line in enumerate(source, start=1):
        digest.update(line)
        if line.strip():
            yield number, line


def _refusal(bad: list[tuple[int, str]], source: str) -> Invalid:
    named = bad[:NAMED_BAD_LINES]
    more = f" and {len(bad) - len(named)} more" if len(bad) > len(named) else ""
    lines = ", ".join(str(number) for number, _ in named)
    return Invalid(
        f"{source}: {len(bad)} bad line(s), nothing was imported (--skip-bad imports the rest): "
        f"line {lines}{more}",
        {f"line {number}": [message] for number, message in named},
    )


@use_case("dataset.import")
def import_datasets(
    rt: Runtime,
    identity: Identity,
    source: Path,
    source_name: str,
    endpoint_name: str | None = None,
    *,
    skip_bad: bool = False,
    chunked: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Check every line of the file ``source`` (JSONL) and record its datasets at the endpoint.

    Invalid, naming the bad lines, when any is bad and ``skip_bad`` is not set: then nothing
    is imported. ``endpoint_name`` is the endpoint's name or id (the default endpoint if None).
    ``chunked`` commits every ``CHUNK`` datasets even into an empty SQLite catalog.
    """
    authorize(identity, "dataset.import")
    with _no_collection(), driver_errors(rt.engine):
        return _import(
            rt, identity, source, source_name, endpoint_name, skip_bad, chunked, progress
        )


@contextmanager
def _no_collection() -> Iterator[None]:
    """Python's cycle collector off during the import: each line makes dozens of containers
    that reference counting frees, and the collector's passes over them (and over a chunk's
    rows) found nothing to collect."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _import(
    rt: Runtime,
    identity: Identity,
    source: Path,
    source_name: str,
    endpoint_name: str | None,
    skip_bad: bool,
    chunked: bool,
    progress: Progress | None,
) -> ImportReport:
    progress = progress or NoProgress()
    with unit_of_work(rt.engine, write=False) as work:
        endpoint = _endpoint(work.session, endpoint_name)
        checker = Checker(rt, work.session, endpoint.id)
    report = ImportReport(endpoint=endpoint.name)
    recorder = _Recorder(identity, source_name, endpoint.id, report, skip_bad)
    progress.phase("checking", None)
    with (
        source.open("rb") as lines,
        closing(_good(checker, lines, report, progress)) as good,
    ):
        # The checking processes start (fork) before the load's transaction does.
        rows = chain(list(islice(good, CHUNK)), good)
        try:
            loaded = not chunked and _load_in_one_go(rt, recorder, rows, progress)
        except _BadLine:  # rolled back; the rest of the lines are checked to name them all
            deque(rows, maxlen=0)
            raise recorder.refusal() from None
        if not loaded:
            _load_in_chunks(rt, recorder, rows, progress)
    # The load's pooled connection goes, and with it the page cache it was given (LOAD_CACHE_KIB).
    rt.engine.dispose()
    if report.imported:
        refresh_statistics(rt.engine, [*LOADED_TABLES, SEARCH_TABLE])
    return report


def _good(
    checker: Checker, lines: BinaryIO, report: ImportReport, progress: Progress
) -> Generator[bytes]:
    """The rows of each good line of ``lines`` (pickled), the bad ones noted in ``report``, and
    its sha256 once they are all read."""
    digest = hashlib.sha256()
    preparer = Preparer(checker, checker.rt.engine.dialect)
    parallel = os.fstat(lines.fileno()).st_size >= PARALLEL_BYTES
    for number, same, outcome in checked(preparer, _lines(lines, digest), parallel):
        report.lines += 1
        if report.lines % 1000 == 0:
            progress.advance(1000)
        if isinstance(outcome, str):
            report.bad.append((number, outcome))
        elif problem := checker.duplicate(number, same):
            report.bad.append((number, problem))
        else:
            yield outcome
    progress.advance(report.lines % 1000)
    report.sha256 = digest.hexdigest()


class _BadLine(Exception):
    """A line of an import loaded as it is checked was bad: the transaction rolls back."""


def _load_in_one_go(
    rt: Runtime,
    recorder: _Recorder,
    rows: Iterator[bytes],
    progress: Progress,
) -> bool:
    """Into a SQLite catalog with no dataset: lines loaded as they are checked, in one
    transaction, the indexes built after the rows. False, and nothing done, for another.

    _BadLine, rolled back before any index is built, at the first bad line unless skipped."""
    with unit_of_work(rt.engine) as work:
        connection = work.session.connection()
        if connection.dialect.name != "sqlite" or not _no_dataset(work.session):
            return False
        progress.phase("checking and loading", None)
        progress.advance(recorder.report.lines)
        with sqlite_load.indexes_after(connection.connection.cursor(), LOADED_TABLES):
            for chunk in _chunks(map(pickle.loads, rows)):
                if recorder.refused():
                    raise _BadLine
                recorder.load(work, chunk)
            if recorder.refused():
                raise _BadLine
        recorder.audit(work)
    sqlite_load.truncate_log(rt.engine)
    return True


def _load_in_chunks(
    rt: Runtime,
    recorder: _Recorder,
    rows: Iterator[bytes],
    progress: Progress,
) -> None:
    """Every line checked first, then ``CHUNK`` datasets per transaction."""
    # The checked rows wait on disk, not in memory: the spool is this process's own (made
    # private and already unlinked), so it cannot change between the passes as the file could.
    with tempfile.TemporaryFile() as spool:
        count = 0
        for row in rows:
            spool.write(row)
            count += 1
        if recorder.refused():
            raise recorder.refusal()
        progress.phase("loading", count)
        spool.seek(0)
        for chunk in _chunks(pickle.load(spool) for _ in range(count)):
            size = len(chunk)
            with unit_of_work(rt.engine) as work:
                recorder.load(work, chunk)
                recorder.audit(work)
            progress.advance(size)


def _chunks(rows: Iterable[Prepared]) -> Iterator[list[Prepared]]:
    chunk: list[Prepared] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _no_dataset(session: Session) -> bool:
    return session.exec(select(Dataset.id).limit(1)).first() is None


def _endpoint(session: Session, name: str | None) -> Endpoint:
    return (
        endpoints.named_endpoint(session, name) if name else user_settings.default_endpoint(session)
    )


@dataclass
class _Recorder:
    """Loads chunks of checked rows, and records each in the audit trail: one event a chunk,
    naming the source file, its sha256, the lines and the datasets' ids."""

    identity: Identity
    source_name: str
    endpoint_id: str
    report: ImportReport
    skip_bad: bool
    #: (first id, last id, lines) of each chunk loaded, not yet recorded.
    loaded: list[tuple[int, int, str]] = field(default_factory=list)

    def refused(self) -> bool:
        """Whether the import is refused: a line was bad, and bad lines are not skipped."""
        return bool(self.report.bad) and not self.skip_bad

    def refusal(self) -> Invalid:
        """The refusal naming the bad lines."""
        return _refusal(self.report.bad, self.source_name)

    def load(self, work: UnitOfWork, chunk: list[Prepared]) -> None:
        """Insert the rows of ``chunk``, and empty it."""
        first, last = _insert_rows(work.session, self.endpoint_id, chunk)
        self.loaded.append((first, last, f"{chunk[0].line}-{chunk[-1].line}"))
        self.report.first_id = self.report.first_id or first
        self.report.last_id = last
        self.report.imported += len(chunk)
        chunk.clear()
        # With the collector off, the reference cycles of the session's work would stay. They
        # are all younger than the last collection; the chunk's rows, gone now, would have
        # been walked too (80 ms a chunk), and a full collection walks every object the
        # process holds (95 ms).
        gc.collect(0)

    def audit(self, work: UnitOfWork) -> None:
        """Record the chunks loaded (once the whole file is read, in one transaction: the
        events name its sha256)."""
        for first, last, lines in self.loaded:
            summary = {
                "source": self.source_name,
                "sha256": self.report.sha256,
                "endpoint_id": self.endpoint_id,
                "datasets": last - first + 1,
                "first_id": first,
                "last_id": last,
                "lines": lines,
            }
            audit.record(
                work, self.identity, "dataset.import", "dataset", f"{first}-{last}", summary
            )
        self.loaded.clear()


def _taken(session: Session, endpoint_id: str, folders: set[str]) -> set[str]:
    """Which of ``folders`` datasets at the endpoint already have (asked of the catalog, by its
    unique index, rather than remembering every folder imported so far)."""
    wanted = list(folders)
    taken: set[str] = set()
    for start in range(0, len(wanted), FOLDERS_PER_QUERY):
        taken.update(
            session.exec(
                select(Dataset.folder).where(
                    Dataset.endpoint_id == endpoint_id,
                    col(Dataset.folder).in_(wanted[start : start + FOLDERS_PER_QUERY]),
                )
            )
        )
    return taken


def _insert_rows(session: Session, endpoint_id: str, rows: list[Prepared]) -> tuple[int, int]:
    """Insert ``rows`` in ``session``'s transaction, numbering datasets and keeping their
    folders unique per endpoint; the first and last dataset ids.

    The rows go to the driver (:func:`_insert`) as tuples, their values already converted by
    the columns' own types (dates, JSON): SQLAlchemy's per-row parameter handling cost three
    times the inserts themselves (see the README's bench).
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")
    next_id = (session.exec(select(func.max(Dataset.id))).one() or 0) + 1
    first = next_id
    taken = _taken(session, endpoint_id, {row.folder for row in rows})
    dataset_rows: list[tuple[Any, ...]] = []
    value_rows: list[tuple[Any, ...]] = []
    file_rows: list[tuple[Any, ...]] = []
    text_rows: list[tuple[Any, ...]] = []
    for row in rows:
        ident, next_id = next_id, next_id + 1
        # Slugs never hold "-": a suffix with one cannot collide with another's folder,
        # as a dataset created through the API is suffixed.
        folder = row.folder if row.folder not in taken else f"{row.folder}-{ident}"
        taken.add(folder)
        dataset_rows.append((ident, *row.dataset, endpoint_id, folder, row.created_at))
        owner = row.dataset[1]
        value_rows += [(ident, *value, owner) for value in row.values]
        file_rows += [(ident, *entry) for entry in row.files]
        text_rows.append((ident, *row.text))
    text_columns = ", ".join(search.text_columns(connection.dialect.name))
    for (table, columns), table_rows in zip(
        (*TABLES, (SEARCH_TABLE, text_columns)),
        (dataset_rows, value_rows, file_rows, text_rows),
        strict=True,
    ):
        if table_rows:
            _insert(connection, table, columns, table_rows)
    search.texts_written(connection, [text[1] for text in text_rows])
    follow_explicit_ids(connection, "dataset")
    return first, next_id - 1


def _insert(connection: Connection, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` into ``table``: many rows per ``INSERT`` on SQLite, one ``COPY`` on
    PostgreSQL, each statement paying the triggers' per-statement costs once for many rows.

    On SQLite a statement that fires triggers opens a statement transaction, and the FTS5 table
    of file names (filled by 0006's trigger) writes out its pending terms at each one: with one
    ``INSERT`` per row (``executemany``) a chunk's files took 6 times as long as without that
    trigger; 100 rows per statement made the whole load 2.6 times as fast at 200,000 datasets. On
    PostgreSQL ``executemany`` is one statement per row, and 0011 counts metadata keys once per
    statement (1,040 datasets a second, 0.17 of a raw ``COPY`` in the same run).
    """
    cursor = connection.connection.cursor()
    if connection.dialect.name == "postgresql":
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    width = columns.count(",") + 1
    per_statement = VARIABLES_PER_STATEMENT // width
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), per_statement):
        part = rows[start : start + per_statement]
        values = ", ".join([one] * len(part))
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES {values}", list(chain.from_iterable(part))
        )
