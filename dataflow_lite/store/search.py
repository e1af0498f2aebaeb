"""Finding datasets and files: the query language of ``q`` over the catalog, newest first.

Each dataset has one row in the ``dataset_text`` full-text table (its rowid is the dataset id)
holding its name, metadata names and values, and file names, one per line (``body``; on
PostgreSQL the tokens FTS5 makes of them, :mod:`pg_words`), and its owner's id (``owner``, so
that SQLite's FTS5 counts one user's matches alone); it is rebuilt whenever the dataset changes
(:func:`reindex`), and a new file's names are appended to it (:func:`add_names`). ``q`` is
parsed by :mod:`dataflow_lite.store.query`; the SQL that answers it is the database's:
:mod:`sqlite_search` and :mod:`sqlite_facets` on SQLite, :mod:`pg_search` and :mod:`pg_facets`
on PostgreSQL (:data:`BACKENDS`, the one place that picks between them).

A page answers ``total`` exactly up to ``search_sql.WINDOW`` results; past it ``total_exact`` is
False and ``total`` is a lower bound. Pages by number go as deep as the window; deeper, the
``next`` cursor of the page before (``after``) seeks from the last result shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import ModuleType
from typing import Any

from sqlalchemy import BigInteger, Connection, func, literal, text
from sqlmodel import Session, col, select

from dataflow_lite.store import pg_facets, pg_search, search_sql, sqlite_facets, sqlite_search
from dataflow_lite.store import query as grammar
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE
from dataflow_lite.store.models import Dataset, DatasetFile, Instrument, MetadataValue, User
from dataflow_lite.store.query import Qualifier, QueryError, Text

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CURSOR = re.compile(r"(\d{1,16})\.(\d{1,19})")

__all__ = ["Page", "PageOutOfWindow", "QueryError", "search_datasets", "search_files"]


class PageOutOfWindow(ValueError):
    """A page number whose results lie past the window (or a cursor that names no result):
    ``field`` is the argument to blame, ``page`` or ``after``."""

    def __init__(self, message: str, field: str = "page") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Page:
    """One page of results, with the total count across pages (exact unless ``total_exact``
    is False, when it is a lower bound) and the cursor that continues after this page."""

    total: int
    has_more: bool
    results: Sequence[Any]
    total_exact: bool = True
    next: str | None = None


#: The search backend of each database kind: (its search module, its facets module). The one
#: place that tells them apart; every function below asks :func:`_backend` for the session's.
BACKENDS: dict[str, tuple[ModuleType, ModuleType]] = {
    "sqlite": (sqlite_search, sqlite_facets),
    "postgresql": (pg_search, pg_facets),
}


def backend_of(dialect: str) -> ModuleType:
    """The search module (``sqlite_search`` or ``pg_search``) of a database kind."""
    return BACKENDS[dialect][0]


def _dialect(db: Session | Connection) -> str:
    return (db.get_bind() if isinstance(db, Session) else db).dialect.name


def _backend(session: Session) -> ModuleType:
    """The search module of the session's database."""
    return backend_of(_dialect(session))


def _facets_backend(session: Session) -> ModuleType:
    """The facets module (``sqlite_facets`` or ``pg_facets``) of the session's database."""
    return BACKENDS[_dialect(session)][1]


def reindex(session: Session, dataset_id: int) -> None:
    """Rebuild the full-text row of one dataset from the catalog (written only when its tokens
    differ, in any order: a change that only reorders words, a renaming, would need the row
    written whatever it holds, and no service makes one)."""
    rewritten = rewrite_texts(session, dataset_id, dataset_id)
    assert rewritten.datasets == 1, f"no dataset {dataset_id}"


@dataclass
class Rewritten:
    """What :func:`rewrite_texts` did."""

    #: Datasets in the range, whose rows were compared with the catalog.
    datasets: int
    #: Ids of the rows written (missing, or holding other words or another owner).
    written: list[int]
    #: Ids of the rows deleted, whose dataset is gone.
    dropped: list[int]


def rewrite_texts(session: Session, first: int, last: int) -> Rewritten:
    """Make the full-text rows of the ids ``first`` to ``last`` say what the catalog says: a
    missing row, or one holding other words (in any order) or another owner, is written again,
    a row whose dataset is gone is deleted, and the rest are left as they are."""
    # As BIGINT: PostgreSQL would bind them as the INTEGER the id columns are.
    between = (literal(first, BigInteger), literal(last, BigInteger))
    datasets = session.execute(
        select(Dataset.id, Dataset.name, Dataset.creator_id)
        .where(col(Dataset.id).between(*between))
        .order_by(col(Dataset.id))
    ).all()
    values: dict[int, list[tuple[str, Any]]] = {}
    for ident, field_name, value in session.execute(
        select(MetadataValue.dataset_id, MetadataValue.field_name, MetadataValue.value)
        .where(col(MetadataValue.dataset_id).between(*between))
        .order_by(col(MetadataValue.dataset_id), col(MetadataValue.id))
    ):
        values.setdefault(ident, []).append((field_name, value))
    names: dict[int, list[str]] = {}
    for ident, name in session.execute(
        select(DatasetFile.dataset_id, DatasetFile.name)
        .where(col(DatasetFile.dataset_id).between(*between))
        .order_by(col(DatasetFile.dataset_id), col(DatasetFile.id))
    ):
        names.setdefault(ident, []).append(name)
    wanted = {
        ident: (text_body(name, values.get(ident, ()), names.get(ident, ())), creator)
        for ident, name, creator in datasets
    }
    backend = _backend(session)
    columns = ", ".join(text_columns(_dialect(session)))
    held = session.execute(
        text(f"SELECT {columns} FROM {SEARCH_TABLE} WHERE rowid BETWEEN :first AND :last"),
        {"first": first, "last": last},
    ).all()
    stale = [
        ident for ident, *row in held
        if ident not in wanted or not backend.row_matches(row, *wanted[ident])
    ]  # fmt: skip
    if stale:
        session.execute(
            text(f"DELETE FROM {SEARCH_TABLE} WHERE rowid = :id"), [{"id": i} for i in stale]
        )
    present = {ident for ident, *_ in held}.difference(stale)
    written = [ident for ident in wanted if ident not in present]
    if written:
        insert_text(session, [(ident, *wanted[ident]) for ident in written])
    return Rewritten(len(datasets), written, [i for i in stale if i not in wanted])


def fts_tables(session: Session) -> tuple[str, ...]:
    """The tables whose index :func:`reindex_table` makes again from their rows: FTS5's on
    SQLite; none on PostgreSQL, whose indexes hold what its rows hold."""
    tables: tuple[str, ...] = _backend(session).FTS_TABLES
    return tables


def reindex_table(session: Session, table: str) -> None:
    """Index every row of ``table``, one of :func:`fts_tables`, again."""
    _backend(session).reindex_table(session, table)


def text_columns(dialect: str) -> tuple[str, ...]:
    """The columns of a full-text row on a database kind, ``rowid`` first."""
    return ("rowid", *backend_of(dialect).TEXT_COLUMNS)


def insert_text(db: Session | Connection, rows: Sequence[tuple[int, str, int]]) -> None:
    """Write full-text rows (dataset id, text, creator id) as the database's backend lays them
    out (SQLite: the text and owner; PostgreSQL: its tokens too), and tell it their text
    (:func:`texts_written`)."""
    dialect = _dialect(db)
    columns, row = text_columns(dialect), backend_of(dialect).text_row
    db.execute(
        text(f"INSERT INTO {SEARCH_TABLE} ({', '.join(columns)}) "
             f"VALUES ({', '.join(':' + column for column in columns)})"),
        [dict(zip(columns, (ident, *row(body, creator)), strict=True))
         for ident, body, creator in rows],
    )  # fmt: skip
    texts_written(db, [body for _, body, _ in rows])


def text_body(name: str, values: Iterable[tuple[str, Any]], file_names: Iterable[str]) -> str:
    """A dataset's full-text row: its name, each metadata name and value, each file name.

    The one place that lays the row out: ``reindex`` and the bulk import both write it. A value
    is indexed as ``str(value)`` (``373``, ``True``, a list as Python shows it).
    """
    words = [name]
    for field_name, value in values:
        words += (field_name, str(value))
    words += file_names
    return "\n".join(words)


def add_names(session: Session, dataset_id: int, names: Sequence[str]) -> None:
    """Add a new file's name (and its folders') to the dataset's full-text row.

    Appending costs the same however many files the dataset has, where rebuilding the row reads
    every one of them back; a name listed twice finds the same datasets.
    """
    appended = "".join("\n" + n for n in names)
    if _backend(session).append_text(session, dataset_id, appended):
        texts_written(session, [appended])
    else:  # no row yet (a catalog from before the index)
        reindex(session, dataset_id)


def texts_written(db: Session | Connection, bodies: Sequence[str]) -> None:
    """Every writer of full-text rows calls this with the text it wrote (or appended), in the
    same transaction: SQLite keeps the tokens each word searched begins
    (:mod:`dataflow_lite.store.sqlite_prefixes`)."""
    backend_of(_dialect(db)).texts_written(db, bodies)


def day_range(query: str) -> tuple[datetime, datetime] | None:
    """The UTC day a ``YYYY-MM-DD`` query names, or None for any other query."""
    when = grammar.day(query.strip())
    if when is None:
        return None
    start = datetime(when.year, when.month, when.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def cursor(dataset: Dataset) -> str:
    """The ``after`` value that continues a search after ``dataset``."""
    moment = dataset.created_at.replace(tzinfo=UTC)
    return f"{int(moment.timestamp() * 1_000_000)}.{dataset.id}"


def read_cursor(value: str) -> tuple[datetime, int]:
    """The position an ``after`` value names; PageOutOfWindow when it names none."""
    found = _CURSOR.fullmatch(value.strip())
    if found is None or int(found.group(2)) > 2**63 - 1:
        raise _not_a_cursor(value)
    micros = int(found.group(1))
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return moment, int(found.group(2))


def _not_a_cursor(value: str) -> PageOutOfWindow:
    return PageOutOfWindow(f"after {value!r} is not a cursor from a page's 'next'", "after")


def _offset(page: int, per_page: int) -> int:
    offset = (page - 1) * per_page
    if offset + per_page > search_sql.WINDOW and page > 1:
        raise PageOutOfWindow(
            f"page {page} at {per_page} a page lies past the first {search_sql.WINDOW} results: "
            "continue from the previous page's 'next' with ?after=..."
        )
    return offset


def _instrument(session: Session, value: str) -> int | None | bool:
    """The instrument ``instrument:`` names (None: the untitled one; True: none such)."""
    if value.isdigit():
        ident = int(value)
        if ident == 0:
            return None
        known = ident <= 2**63 - 1 and session.get(Instrument, ident) is not None
        return ident if known else True
    if value.lower() == "untitled instrument":
        return None
    found = session.exec(
        select(Instrument.id).where(func.lower(Instrument.name) == value.lower())
    ).first()
    return True if found is None else found


def _created(sql: search_sql.Sql, term: Qualifier, backend: ModuleType) -> str:
    low, high = term.low, term.high
    checks = []
    if isinstance(low, date):
        checks.append(f"d.created_at >= {sql.bind(backend.day_start(low))}")
    if isinstance(high, date):
        checks.append(f"d.created_at < {sql.bind(backend.day_start(high + timedelta(days=1)))}")
    both = " AND ".join(checks)
    return f"NOT ({both})" if term.negated else both


def plan(
    session: Session, owner_id: int | None, terms: Sequence[grammar.Term]
) -> tuple[search_sql.Sql, search_sql.Walk, list[search_sql.Cond]] | None:
    """The SQL conditions of ``terms`` for ``owner_id`` (None: everyone's), or None when no
    dataset can match (an unknown instrument, another user's name for a user)."""
    backend = _backend(session)
    sql = search_sql.Sql()
    conds: list[search_sql.Cond] = []
    instrument: int | None | bool = False
    owner = owner_id
    for term in terms:
        if not isinstance(term, Qualifier) or not term.builtin:
            continue
        if term.key == "created":
            conds.append(search_sql.Cond(_created(sql, term, backend), reads_row=True))
        elif term.key == "file":
            conds.append(backend.file_cond(sql, str(term.value), term.negated))
        elif term.key == "instrument":
            named = _instrument(session, str(term.value))
            if term.negated:
                if named is not True:
                    other = f"(d.instrument_id IS NULL OR d.instrument_id != {sql.bind(named)})"
                    check = "d.instrument_id IS NOT NULL" if named is None else other
                    conds.append(search_sql.Cond(check, reads_row=True))
            elif named is True or (instrument is not False and instrument != named):
                return None
            else:
                instrument = named
        elif term.key == "creator":
            user = session.exec(select(User.id).where(User.username == term.value)).first()
            if term.negated:
                if user is not None:
                    conds.append(
                        search_sql.Cond(f"d.creator_id != {sql.bind(user)}", reads_row=True)
                    )
            elif user is None or (owner is not None and owner != user):
                return None  # a user's search never reaches another user's datasets
            else:
                owner = user
    # After the terms: the words' and values' lists are confined to the owner they settle on.
    words = [term for term in terms if isinstance(term, Text)]
    positive, negative = [t for t in words if not t.negated], [t for t in words if t.negated]
    values = [t for t in terms if isinstance(t, Qualifier) and not t.builtin]
    conds = [
        *backend.text_cond(session, sql, positive, negative, owner),
        *(backend.value_cond(sql, term, owner) for term in values),
        *conds,
    ]
    return sql, backend.walk(sql, owner, instrument), conds


def search_datasets(
    session: Session,
    owner_id: int | None,
    query: str,
    page: int,
    per_page: int,
    after: str | None = None,
) -> Page:
    """Datasets of ``owner_id`` (None: everyone) matching ``query`` (all if empty), newest first.

    QueryError for a malformed query, PageOutOfWindow for a page past the window.
    """
    terms = grammar.parse(query)
    position = read_cursor(after) if after else None
    offset = 0 if position else _offset(page, per_page)
    planned = plan(session, owner_id, terms)
    if planned is None:
        return Page(total=0, has_more=False, results=[])
    sql, route, conds = planned
    found = _backend(session).dataset_page(
        session, sql, route, conds, position, offset, per_page + 1
    )
    ids = found.ids[:per_page]
    rows = {row.id: row for row in session.exec(select(Dataset).where(col(Dataset.id).in_(ids)))}
    results = [rows[ident] for ident in ids]
    has_more = len(found.ids) > per_page
    return Page(
        total=min(found.count, search_sql.WINDOW),
        has_more=has_more,
        results=results,
        total_exact=found.count <= search_sql.WINDOW,
        next=cursor(results[-1]) if has_more and results else None,
    )


def search_files(
    session: Session,
    owner_id: int | None,
    query: str,
    dataset_id: int | None,
    page: int,
    per_page: int,
    after: str | None = None,
) -> Page:
    """Files and directories of ``owner_id``'s datasets whose name contains ``query`` (or
    created on its day), in the order they were added; ``after`` is a file id."""
    start = 0
    if after:
        if not after.strip().isdigit() or int(after) > 2**63 - 1:
            raise _not_a_cursor(after)
        start = int(after)
    offset = 0 if after else _offset(page, per_page)
    sql = search_sql.Sql()
    found = _backend(session).file_page(
        session, sql, owner_id, query.strip(), day_range(query), dataset_id, start, offset,
        per_page + 1,
    )  # fmt: skip
    ids = found.ids[:per_page]
    rows = {
        row.id: row for row in session.exec(select(DatasetFile).where(col(DatasetFile.id).in_(ids)))
    }
    has_more = len(found.ids) > per_page
    return Page(
        total=min(found.count, search_sql.WINDOW),
        has_more=has_more,
        results=[rows[ident] for ident in ids],
        total_exact=found.count <= search_sql.WINDOW,
        next=str(ids[-1]) if has_more and ids else None,
    )


@dataclass
class Facets:
    """Counts of the top values of fields among the datasets matching a search.

    Counted among at most WINDOW matching datasets: ``total_exact`` False says there were more
    (and the counts are of WINDOW of them, not of all). Each bucket's ``q`` is the term that
    narrows the search to it (None when the language cannot say it).
    """

    total: int
    total_exact: bool
    facets: dict[str, list[dict[str, Any]]]


def _key_term(key: str) -> str | None:
    if '"' in key:
        return None
    plain = re.fullmatch(r'[^\s"<>=:]+', key) and key not in grammar.BUILT_INS
    return key if plain else f'"{key}"'


def _month_range(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    following = date(year + number // 12, number % 12 + 1, 1)
    return f"{month}-01..{(following - timedelta(days=1)).isoformat()}"


def narrowing_term(field: str, bucket: sqlite_facets.Bucket, month: bool) -> str | None:
    """The search term that keeps the datasets of one facet bucket."""
    value = bucket.value
    if field == "created":
        return f"created:{_month_range(value)}"
    if field in ("instrument", "creator"):
        return f"{field}:{bucket.id if field == 'instrument' else value}"
    key = _key_term(field)
    if key is None:
        return None
    if month:
        return f"{key}:{_month_range(value)}"
    if value is None:
        return f"{key}:null"
    if isinstance(value, bool):
        return f"{key}:{'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"{key}:{value!r}"
    if isinstance(value, str) and '"' not in value and not value.startswith("["):
        return f'{key}:"{value}"' if value else None
    return None


def facet_datasets(
    session: Session, owner_id: int | None, query: str, fields: Sequence[str], top: int
) -> Facets:
    """The ``top`` values of each of ``fields`` among ``owner_id``'s datasets matching ``query``."""
    terms = grammar.parse(query)
    planned = plan(session, owner_id, terms)
    if planned is None:
        return Facets(0, True, {field: [] for field in fields})
    ids = _facets_backend(session).matching_ids(session, *planned)
    exact = len(ids) <= search_sql.WINDOW
    ids = ids[: search_sql.WINDOW]
    shown: dict[str, list[dict[str, Any]]] = {}
    for field in fields:
        buckets = _facets_backend(session).field_buckets(session, ids, field, top)
        builtin = field in ("created", "instrument", "creator")
        shown[field] = [
            {
                "value": bucket.value,
                "count": bucket.count,
                **({"id": bucket.id} if bucket.id is not None else {}),
                "q": narrowing_term(field, bucket, month=_is_month(bucket.value, builtin)),
            }
            for bucket in buckets
        ]
    return Facets(len(ids), exact, shown)


def _is_month(value: Any, builtin: bool) -> bool:
    return not builtin and isinstance(value, str) and bool(re.fullmatch(r"\d{4}-\d{2}", value))


def metadata_keys(session: Session, owner_id: int | None) -> list[sqlite_facets.Key]:
    """Every flattened key on ``owner_id``'s datasets (None: all), with counts and types."""
    return _facets_backend(session).keys(session, owner_id)
