"""Checking the lines of a bulk import: one JSON dataset per line, turned into rows to insert.

A line is ``{"name", "creator", "instrument", "created_at", "metadata", "files"}`` (see the
README's "Bulk import"). It is checked the way the service checks a new dataset (its name, its
metadata flattened by :mod:`dataflow_lite.store.metadata` against the instrument's form and the
size limits, each file's path by :mod:`dataflow_lite.store.layout`), and against what is
already known: the users and instruments of the catalog, and the datasets already there or on
an earlier line (a dataset is the same one when its name, creator, instrument and creation time
are). Nothing here writes; ``imports`` loads what passed, as :class:`Preparer` laid it out.

Checking is the part of an import that parallelises: :func:`checked` hands a large file's lines
to a process per CPU in batches (forked, so each inherits the checker), and takes their results
back in the order of the lines, for the one check that needs the lines before it (duplicates).

A checker remembers one small digest per dataset (those at the endpoint and those of the lines
checked so far), not the rows: a file of millions of lines is checked in constant memory but
for that.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import pickle
import re
import signal
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import datasets
from dataflow_lite.services.errors import ServiceError
from dataflow_lite.store import catalog, layout, metadata, search
from dataflow_lite.store.models import Dataset, Instrument, MetadataField, User, row_id

KEYS = frozenset({"name", "creator", "instrument", "created_at", "metadata", "files"})
FILE_KEYS = frozenset({"relative_path", "name", "size", "sha256"})
SHA256 = re.compile(r"[0-9a-f]{64}")


#: Lines a checking process takes at a time, and how many such batches may wait per process:
#: enough that the processes go on checking while the importing one loads a chunk of 10,000
#: (with 2 a process, they sat idle for most of it: 200,000 datasets took 19.6 s against 17.4-18.9
#: with 8 or 16), and few enough that memory stays bounded (about 1 KB a line).
BATCH, BATCHES_PER_PROCESS = 1_000, 8
DATASETS = SQLModel.metadata.tables["dataset"]
VALUES = SQLModel.metadata.tables["metadatavalue"]


class BadLine(ValueError):
    """A line that cannot be imported; the message says why."""


@dataclass
class Row:
    """One dataset that passed its checks, ready to be inserted."""

    line: int
    name: str
    creator_id: int
    instrument_id: int | None
    folder: str
    created_at: datetime
    #: Flattened values: (field name, value, id of the form field or None).
    values: list[tuple[str, Any, int | None]]
    #: (relative_path, name, size, sha256) for each file.
    files: list[tuple[str, str, int, str]]
    #: (relative_path, name) of each folder the files are in, parents first.
    directories: list[tuple[str, str]] = field(default_factory=list)


class Checker:
    """Checks lines against one catalog: its users, instruments, forms and datasets."""

    def __init__(self, rt: Runtime, session: Session, endpoint_id: str) -> None:
        self.rt = rt
        self.users = {row.username: row.id for row in session.exec(select(User))}
        self.instruments = {row_id(row): row for row in session.exec(select(Instrument))}
        self.instrument_names = {row.name: row for row in self.instruments.values()}
        self.forms: dict[int, list[MetadataField]] = {
            ident: list(catalog.instrument_fields(session, ident)) for ident in self.instruments
        }
        # SQLAlchemy's select: sqlmodel's takes at most four columns.
        existing = session.execute(
            sa.select(
                col(Dataset.id), col(Dataset.name), col(Dataset.creator_id),
                col(Dataset.instrument_id), col(Dataset.created_at),
            ).where(col(Dataset.endpoint_id) == endpoint_id)
        ).all()  # fmt: skip
        #: Where each dataset already is, by :func:`_identity`: a line number, or minus the id
        #: of a dataset in the catalog.
        self.seen: dict[bytes, int] = {
            _identity(name, creator, instrument, _utc(created)): -ident
            for ident, name, creator, instrument, created in existing
        }

    def duplicate(self, line_number: int, same: bytes) -> str | None:
        """What is wrong if the dataset of ``line_number`` (``same``, its identity) is
        already in the catalog or on an earlier line; else None. Lines must come here in order,
        whichever process checked the rest of them."""
        where = self.seen.setdefault(same, line_number)
        if where == line_number:
            return None
        earlier = f"dataset {-where}" if where < 0 else f"line {where}"
        return f"the same dataset as {earlier} (name, creator, time)"

    def row(self, line_number: int, text: bytes) -> Row:
        """The row a line describes, or BadLine: every check but the one for duplicates (which
        needs the lines before it: :meth:`duplicate`)."""
        try:
            item = _DECODER.decode(text.decode(json.detect_encoding(text), "surrogatepass"))
        except BadLine:
            raise
        # ValueError: also an integer of more than Python's 4,300 digits; RecursionError:
        # arrays nested deeper than Python's stack.
        except (ValueError, RecursionError) as error:
            raise BadLine(f"not JSON: {error}") from None
        if not isinstance(item, dict):
            raise BadLine("must be a JSON object, one dataset per line")
        unknown = sorted(set(item) - KEYS)
        if unknown:
            raise BadLine(f"unknown key {unknown[0]!r} (keys: {', '.join(sorted(KEYS))})")
        name = _text(item, "name")
        try:
            datasets.check_name(name)
        except ServiceError as error:
            raise BadLine(f"name {error.errors['name'][0]}") from None
        username = _text(item, "creator")
        creator_id = self.users.get(username)
        if creator_id is None:
            raise BadLine(f"no user {username!r} (add the user first)")
        instrument = self._instrument(item.get("instrument"))
        created_at = _created_at(item.get("created_at"))
        instrument_id = instrument.id if instrument else None
        values = self._values(item.get("metadata", {}), instrument)
        files, directories = _files(item.get("files", []))
        folder = layout.dataset_folder_text(
            instrument.name if instrument else None, created_at, name
        )
        return Row(
            line_number, name, creator_id, instrument_id, folder, created_at, values, files,
            directories,
        )  # fmt: skip

    def _instrument(self, given: Any) -> Instrument | None:
        if given is None or given == 0 or given == "":
            return None
        found: Instrument | None = None
        if isinstance(given, str):
            found = self.instrument_names.get(given)
            if found is None and given.isascii() and given.isdigit():
                found = self.instruments.get(int(given))
        elif isinstance(given, int) and not isinstance(given, bool):
            found = self.instruments.get(given)
        else:
            raise BadLine("instrument must be a name or an id")
        if found is None:
            raise BadLine(f"no instrument {given!r} (add the instrument first)")
        return found

    def _values(
        self, given: Any, instrument: Instrument | None
    ) -> list[tuple[str, Any, int | None]]:
        if not isinstance(given, Mapping):
            raise BadLine("metadata must be a JSON object (nested as ordflow's callers write it)")
        values = metadata.flatten(given)
        try:
            datasets.check_sizes(self.rt, values)
        except ServiceError as error:
            raise BadLine(error.message) from None
        form = self.forms.get(instrument.id, []) if instrument and instrument.id else []
        try:
            fields = metadata.validate(values, form)
        except metadata.InvalidMetadata as error:
            raise BadLine(f"metadata: {error}") from None
        return [
            (name, value, form_field.id if (form_field := fields.get(name)) else None)
            for name, value in values
        ]


def _finite(text: str) -> float:
    """A JSON number as a float, refused if it is too large for one: the catalog keeps values
    as JSON, which has no infinity."""
    number = float(text)
    if not math.isfinite(number):
        raise BadLine(f"the number {text} is too large")
    return number


def _no_constant(text: str) -> float:
    """``NaN`` and ``Infinity``, which Python's json reads but JSON does not have: refused."""
    raise BadLine(f"{text} is not a JSON value")


#: ``json.loads`` with these hooks, made once: ``loads`` builds a decoder per call when given any.
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise BadLine(f"{key} must be text")
    return value


def dataset_identity(row: Row) -> bytes:
    """What makes ``row`` the same dataset as another (see :func:`_identity`)."""
    return _identity(row.name, row.creator_id, row.instrument_id, row.created_at)


def _identity(name: str, creator_id: int, instrument_id: int | None, created: datetime) -> bytes:
    """What makes two datasets the same one (name, creator, instrument, creation time), as a
    128-bit digest: a fifth of the memory of the tuple, and no two differ by chance in practice
    (about one pair in 10**25 among a billion datasets)."""
    key = f"{name}\0{creator_id}\0{instrument_id}\0{created.isoformat()}"
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _utc(moment: datetime) -> datetime:
    """A catalog time (naive, UTC) as an aware one."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _created_at(given: Any) -> datetime:
    """An ISO 8601 time in UTC, to the second (the catalog keeps whole seconds)."""
    if not isinstance(given, str):
        raise BadLine("created_at must be an ISO 8601 time, such as 2024-05-01T12:30:00Z")
    try:
        moment = datetime.fromisoformat(given)
    except ValueError:
        raise BadLine(f"created_at {given!r} is not an ISO 8601 time") from None
    # A time without an offset is taken as UTC, as the catalog keeps every time.
    return _utc(moment).replace(microsecond=0)


def _files(given: Any) -> tuple[list[tuple[str, str, int, str]], list[tuple[str, str]]]:
    """The files of a line, checked as uploads are, and the folders they are in."""
    if not isinstance(given, list):
        raise BadLine("files must be a list")
    files: list[tuple[str, str, int, str]] = []
    paths: set[tuple[str, ...]] = set()
    directories: dict[tuple[str, ...], tuple[str, str]] = {}
    for number, entry in enumerate(given, start=1):
        if not isinstance(entry, dict):
            raise BadLine(f"file {number} must be a JSON object")
        if not FILE_KEYS.issuperset(entry):
            raise BadLine(f"file {number}: unknown key {sorted(set(entry) - FILE_KEYS)[0]!r}")
        relative_path = entry.get("relative_path", "")
        name, size, sha256 = entry.get("name"), entry.get("size"), entry.get("sha256")
        if not isinstance(relative_path, str) or not isinstance(name, str):
            raise BadLine(f"file {number}: relative_path and name must be text")
        try:
            parts = layout.relative_path_parts(relative_path)
            layout.check_file_name(name)
        except layout.UnsafePath as error:
            raise BadLine(f"file {number}: {error}") from None
        if (parts[:1] or (name,)) == (layout.METADATA_FILE,):
            raise BadLine(f"file {number}: {layout.METADATA_FILE} at the root is the server's")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadLine(f"file {number}: size must be a whole number of bytes")
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256 := sha256.lower()):
            raise BadLine(f"file {number}: sha256 must be 64 hexadecimal digits")
        path = (*parts, name)
        if path in paths or path in directories:
            raise BadLine(f"file {number}: {'/'.join(path)} is given twice, or is also a folder")
        paths.add(path)
        for depth in range(1, len(parts) + 1):
            folder = parts[:depth]
            if folder in paths:
                raise BadLine(f"file {number}: {'/'.join(folder)} is a file, not a folder")
            directories.setdefault(folder, ("/".join(parts[: depth - 1]), parts[depth - 1]))
        files.append(("/".join(parts), name, size, sha256))
    return files, list(directories.values())


class Prepared(NamedTuple):
    """A checked dataset's rows as the load inserts them, but for the dataset's id (and its
    folder, which the load makes unique)."""

    line: int
    folder: str
    #: name, creator_id, instrument_id
    dataset: tuple[str, int, int | None]
    created_at: Any
    #: field_name, value (JSON text), metadata_field_id
    values: list[tuple[str, Any, int | None]]
    #: name, relative_path, is_directory, file_length, file_type, sha256, created_at
    files: list[tuple[Any, ...]]
    #: the full-text row after its rowid (the backend's ``TEXT_COLUMNS``)
    text: tuple[str, ...]


#: What one line came to: its number, the dataset's identity and its Prepared rows (pickled),
#: or for a bad line an empty identity and what is wrong with it.
Checked = tuple[int, bytes, bytes | str]


class Preparer:
    """Checks lines and prepares each dataset's rows for the load: values already converted by
    the columns' own types, files and folders as rows, the full-text row laid out. This is the
    part of the import that runs in several processes at once (:func:`checked`)."""

    def __init__(self, checker: Checker, dialect: Any) -> None:
        self.checker = checker
        self.when = _converter(DATASETS.c.created_at, dialect)
        self.value_text = _converter(VALUES.c.value, dialect)
        self.text_row = search.backend_of(dialect.name).text_row

    def lines(self, batch: list[tuple[int, bytes]]) -> list[Checked]:
        done: list[Checked] = []
        for number, text in batch:
            try:
                row = self.checker.row(number, text)
            except BadLine as error:
                done.append((number, b"", str(error)))
            else:
                # One pickle per row: a pickler and unpickler kept across rows would each keep
                # every row they saw in their memo (3.7 GB at a million).
                prepared = pickle.dumps(self.prepare(row), protocol=pickle.HIGHEST_PROTOCOL)
                done.append((number, dataset_identity(row), prepared))
        return done

    def prepare(self, row: Row) -> Prepared:
        created = self.when(row.created_at)
        files: list[tuple[Any, ...]] = [
            (name, path, False, size, None, sha, created) for path, name, size, sha in row.files
        ]
        files += [(name, path, True, None, None, None, created) for path, name in row.directories]
        names = [name for _, name, _, _ in row.files] + [name for _, name in row.directories]
        return Prepared(
            row.line,
            row.folder,
            (row.name, row.creator_id, row.instrument_id),
            created,
            [(name, self.value_text(value), field) for name, value, field in row.values],
            files,
            self.text_row(
                search.text_body(row.name, ((n, v) for n, v, _ in row.values), names),
                row.creator_id,
            ),
        )


#: The preparer of the import running in this process, which its checking processes inherit.
_PREPARER: Preparer | None = None


def checked(
    preparer: Preparer, numbered: Iterator[tuple[int, bytes]], parallel: bool
) -> Iterator[Checked]:
    """What each line came to, in the order of the lines: checked here, or in batches by a
    process per CPU (a few batches ahead at most, so memory stays bounded)."""
    batches = iter(lambda: list(islice(numbered, BATCH)), [])
    if not parallel:
        for batch in batches:
            yield from preparer.lines(batch)
        return
    global _PREPARER
    assert _PREPARER is None, "one import at a time in a process"
    _PREPARER = preparer
    # The CPUs this process may use (a container's share, not the host's).
    processes = len(os.sched_getaffinity(0))
    # No pooled connection for the processes to inherit: a catalog connection must be neither
    # used nor closed in a forked process (SQLite's "How To Corrupt" guide); the load reconnects.
    preparer.checker.rt.engine.dispose()
    try:
        with ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("fork"), initializer=_forked
        ) as pool:
            waiting: deque[Future[list[Checked]]] = deque()
            for batch in batches:
                waiting.append(pool.submit(_check_batch, batch))
                if len(waiting) >= processes * BATCHES_PER_PROCESS:
                    yield from waiting.popleft().result()
            while waiting:
                yield from waiting.popleft().result()
    except BrokenProcessPool as error:  # one was killed (out of memory?): a line, not a trace
        raise ChildProcessError(f"a process checking the lines stopped: {error}") from None
    finally:
        _PREPARER = None


def _forked() -> None:
    """In a checking process: Ctrl-C is for the importing process, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _check_batch(batch: list[tuple[int, bytes]]) -> list[Checked]:
    assert _PREPARER is not None
    return _PREPARER.lines(batch)


def _converter(column: Any, dialect: Any) -> Any:
    """What ``column``'s type does to a Python value before the driver sees it."""
    return column.type.dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)
