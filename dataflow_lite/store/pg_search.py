"""The SQL of search on PostgreSQL: the same answers as :mod:`sqlite_search`, in PostgreSQL's SQL.

It exposes the functions :mod:`dataflow_lite.store.search` calls on a backend (``text_cond``,
``value_cond``, ``file_cond``, ``walk``, ``dataset_page``, ``file_page``, ``day_start``), with
the backend-neutral pieces (:class:`Sql`, :class:`Cond`, :class:`Walk`, :class:`Found`,
``WINDOW``) from :mod:`search_sql`, as the SQLite backend has them.

Words keep SQLite's semantics by matching the row's text against the tokens
:func:`sqlite_words.tokens` makes of the query, as a regular expression over the lowercased
text: a token is a run of letters and digits, a bare word matches a token it begins, a phrase
its tokens in a row. Metadata values are read as ``jsonb``; file names by ``ILIKE`` (SQLite's
``LIKE`` ignores ASCII case), which the
``pg_trgm`` index of revision 0007 serves. Datasets are listed by one query each, sorted by the
planner over the indexes of revisions 0006 and 0007: no ``INDEXED BY`` hints are needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session

from dataflow_lite.store import sqlite_words
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE
from dataflow_lite.store.query import Qualifier, Text
from dataflow_lite.store.search_sql import (
    TRIGRAM,
    WINDOW,
    Cond,
    Found,
    Sql,
    Walk,
    bounded_count,
    like_pattern,
    list_size,
)

_VALUE = "(m.value::jsonb)"
_KIND = f"jsonb_typeof({_VALUE})"
_NUMBER = f"{_KIND} = 'number'"
_TEXT = f"{_KIND} = 'string'"
_SCALAR = f"({_VALUE} #>> '{{}}')"
#: A number value as ``numeric`` (NULL for any other type: PostgreSQL may test in any order,
#: so the cast is guarded by CASE rather than by an AND beside it).
_NUMERIC = f"(CASE WHEN {_NUMBER} THEN {_SCALAR}::numeric END)"
_DATE = "'^[0-9]{4}-[0-9]{2}-[0-9]{2}'"
_SEPARATOR = "[^[:alnum:]]"
#: Ends a term's per-dataset check (``EXISTS (...)``): PostgreSQL does not turn a subquery with
#: an OFFSET into a join, so the check stays a lookup by the dataset's id. As a join, the planner
#: (misled by the typed indexes' estimates: 25 rows for 100,000) read a term's whole list and
#: sorted it where walking the newest datasets finds a page in a few hundred lookups.
PER_ROW = " OFFSET 0"


def day_start(when: date) -> datetime:
    """The first moment of a UTC day, as a time PostgreSQL compares with ``created_at``."""
    return datetime(when.year, when.month, when.day, tzinfo=UTC)


def stored_time(moment: datetime) -> datetime:
    """A time as PostgreSQL compares it (with its zone): the moment itself, in UTC."""
    return moment.astimezone(UTC)


def words_pattern(words: str, prefix: bool) -> str | None:
    """A regular expression finding ``words``' tokens in a row (None: they have no token)."""
    found = sqlite_words.tokens(words)
    if not found:
        return None
    tail = "" if prefix else f"({_SEPARATOR}|$)"
    return f"(^|{_SEPARATOR})" + f"{_SEPARATOR}+".join(found) + tail


def text_cond(
    sql: Sql, positive: Sequence[Text], negative: Sequence[Text], owner_id: int | None = None
) -> list[Cond]:
    """Full-text conditions: every positive term's tokens in the row, no negative term's
    (``owner_id`` is the walk's to check: the trigram list does not narrow to it).

    The row is checked by its primary key (``rowid`` = dataset id); the list of ids reads the
    trigram index of revision 0007, which intersects the trigrams of every positive term.
    """
    if not positive and not negative:
        return []
    wanted: list[str] = []
    unwanted: list[str] = []
    for term, keep in [(t, True) for t in positive] + [(t, False) for t in negative]:
        pattern = words_pattern(term.words, not term.phrase)
        if pattern is None:
            # FTS5 holds no row for a term without a token: nothing matches it.
            if keep:
                return [Cond("FALSE")]
            continue
        (wanted if keep else unwanted).append(f"lower(t.body) ~ {sql.bind(pattern)}")
    checks = []
    for test in unwanted:
        checks.append(f"NOT EXISTS (SELECT 1 FROM {SEARCH_TABLE} AS t "
                      f"WHERE t.rowid = d.id AND {test}{PER_ROW})")  # fmt: skip
    if not wanted:
        return [Cond(" AND ".join(checks) or "TRUE")]
    tests = " AND ".join([*wanted, *(f"NOT {test}" for test in unwanted)])
    check = f"EXISTS (SELECT 1 FROM {SEARCH_TABLE} AS t WHERE t.rowid = d.id AND {tests}{PER_ROW})"
    return [Cond(check, f"SELECT t.rowid AS id FROM {SEARCH_TABLE} AS t WHERE {tests}")]


def _date_bounds(sql: Sql, low: date | None, high: date | None) -> str:
    """Text values that are dates (or times) from day ``low`` to day ``high``, inclusive."""
    value = f"lower({_SCALAR})"
    parts = [_TEXT, f"{_SCALAR} ~ {_DATE}"]
    if low is not None:
        parts.append(f'{value} >= {sql.bind(low.isoformat())} COLLATE "C"')
    if high is not None:
        parts.append(f'{value} < {sql.bind((high + timedelta(days=1)).isoformat())} COLLATE "C"')
    return " AND ".join(parts)


def _number(sql: Sql, op: str, value: float) -> str:
    return f"{_NUMERIC} {op} {_as_numeric(sql, value)}"


def _as_numeric(sql: Sql, value: float) -> str:
    # A float parameter is double precision: numeric would be compared as a double, which the
    # typed index (numeric) cannot answer. Cast as text, so that 0.1 stays 0.1.
    return f"CAST({sql.bind(str(value))} AS numeric)"


def _value_branches(sql: Sql, term: Qualifier) -> list[str]:
    """What a metadata value ``m`` must be, as alternatives (any one of them matches)."""
    ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    if term.op == "has":
        return ["TRUE"]
    if term.op == "range":
        low, high = term.low, term.high
        if isinstance(low, date) or isinstance(high, date):
            days = [end if isinstance(end, date) else None for end in (low, high)]
            return [_date_bounds(sql, *days)]
        parts = [_NUMBER]
        if isinstance(low, int | float):
            parts.append(f"{_NUMERIC} >= {_as_numeric(sql, low)}")
        if isinstance(high, int | float):
            parts.append(f"{_NUMERIC} <= {_as_numeric(sql, high)}")
        return [" AND ".join(parts)]
    value = term.value
    if term.op in ops:
        if isinstance(value, date):
            if term.op in ("gt", "ge"):
                return [_date_bounds(sql, value + timedelta(days=1) if term.op == "gt" else value,
                                     None)]  # fmt: skip
            return [_date_bounds(sql, None, value - timedelta(days=1)
                                 if term.op == "lt" else value)]  # fmt: skip
        assert isinstance(value, int | float)
        return [_number(sql, ops[term.op], value)]
    # SQLite's lower() folds ASCII only: so does this, for the same answers.
    folded = "translate({}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
    branches = [f"{_TEXT} AND {folded.format(_SCALAR)} = {folded.format(sql.bind(term.raw))}"]
    if isinstance(value, date):
        branches.append(_date_bounds(sql, value, value))
    elif isinstance(value, int | float):
        branches.append(_number(sql, "=", value))
    elif term.raw.lower() in ("true", "false"):
        branches.append(f"{_VALUE} = CAST({sql.bind(term.raw.lower())} AS jsonb)")
    elif term.raw.lower() == "null":
        # Earlier releases stored a null sent through the API as SQL NULL, not JSON null.
        branches.append(f"(m.value IS NULL OR {_KIND} = 'null')")
    return branches


def value_cond(sql: Sql, term: Qualifier, owner_id: int | None = None) -> Cond:
    """A metadata qualifier: the dataset has a value of ``term.key`` that matches
    (``owner_id`` is the walk's to check: these value indexes hold no owner)."""
    key = sql.bind(term.key)
    branches = _value_branches(sql, term)
    either = " OR ".join(f"({branch})" for branch in branches)
    check = (
        "EXISTS (SELECT 1 FROM metadatavalue AS m "
        f"WHERE m.dataset_id = d.id AND m.field_name = {key} AND ({either}){PER_ROW})"
    )
    if term.negated:
        return Cond("NOT " + check)
    # One SELECT per branch, so that each reads its own index (typed number, text, key).
    ids = " UNION ".join(
        f"SELECT m.dataset_id AS id FROM metadatavalue AS m WHERE m.field_name = {key} AND {branch}"
        for branch in branches
    )
    return Cond(check, ids)


def file_cond(sql: Sql, substring: str, negated: bool) -> Cond:
    """``file:TEXT``: the dataset has a file whose name contains TEXT."""
    bound = sql.bind(like_pattern(substring))
    check = (
        "EXISTS (SELECT 1 FROM datasetfile AS f "
        f"WHERE f.dataset_id = d.id AND f.name ILIKE {bound} ESCAPE '\\'{PER_ROW})"
    )
    if negated:
        return Cond("NOT " + check)
    if len(substring) < TRIGRAM:  # no trigram to look up: checked row by row only
        return Cond(check)
    ids = f"SELECT DISTINCT f.dataset_id AS id FROM datasetfile AS f WHERE f.name ILIKE {bound} " \
          "ESCAPE '\\'"  # fmt: skip
    return Cond(check, ids)


def walk(sql: Sql, owner_id: int | None, instrument: int | None | bool) -> Walk:
    """The row checks of the owner and instrument (``instrument`` False: any)."""
    checks = []
    if instrument is not False:
        if instrument is None:
            checks.append("d.instrument_id IS NULL")
        else:
            checks.append(f"d.instrument_id = {sql.bind(instrument)}")
    if owner_id is not None:
        checks.append(f"d.creator_id = {sql.bind(owner_id)}")
    return Walk("", checks)


def dataset_page(
    session: Session,
    sql: Sql,
    route: Walk,
    conds: Sequence[Cond],
    after: tuple[datetime, int] | None,
    offset: int,
    limit: int,
) -> Found:
    """The ids of a page of datasets passing the route's checks and ``conds``, newest first.

    As on SQLite: the shortest list of the terms that list their datasets (each counted up to
    WINDOW + 1) drives: its datasets that pass every other check are counted, up to WINDOW + 1;
    when they are at most WINDOW they are sorted, otherwise the page is found by walking the
    datasets newest first, each checked against every term. With no list, the walk counts too.
    """
    listed = [cond for cond in conds if cond.ids]
    if len(listed) > 1:
        sizes = sorted((list_size(session, sql, cond), index) for index, cond in enumerate(listed))
        listed = [listed[index] for _, index in sizes]
    # One list needs no measuring: counting along it with the other checks (below) tells
    # whether it drives, and its length alone would be one more pass over the same rows.
    order = "ORDER BY d.created_at DESC, d.id DESC"
    seek = []
    if after is not None:
        seek = [f"(d.created_at, d.id) < ({sql.bind(stored_time(after[0]))}, {sql.bind(after[1])})"]
    page = f"LIMIT {int(limit)} OFFSET {int(offset)}"
    if listed:
        driver = listed[0]
        others = " AND ".join(["TRUE", *route.checks, *(c.check for c in conds if c is not driver)])
        found = (
            f"SELECT d.id, d.created_at FROM ({driver.ids}) AS s JOIN dataset AS d ON d.id = s.id "
            f"WHERE {others}"
        )
        # Counted along the shortest list (unsorted, stopping past WINDOW): when the list is
        # long, it is read only until WINDOW + 1 pass, rather than every dataset walked.
        count = bounded_count(session, sql, found)
        if count <= WINDOW:
            # MATERIALIZED: the few are found whole and then sorted. Left to itself, with ORDER
            # BY and LIMIT, the planner may walk every dataset newest first to meet them.
            sorted_page = (
                f"WITH found AS MATERIALIZED ({found}) SELECT d.id FROM found AS d "
                f"WHERE {' AND '.join(['TRUE', *seek])} {order} {page}"
            )
            rows = sql.all(session, sorted_page)
            return Found([row[0] for row in rows], count)
    where = " AND ".join(["TRUE", *route.checks, *(cond.check for cond in conds)])
    if not listed:
        count = bounded_count(session, sql, f"SELECT 1 FROM dataset AS d WHERE {where}")
    # Many pass: walked newest first (the creator's or an instrument's index, then by time),
    # each dataset checked against every term until the page is full.
    rows = sql.all(
        session,
        f"SELECT d.id FROM dataset AS d WHERE {' AND '.join([where, *seek])} {order} {page}",
    )
    return Found([row[0] for row in rows], count)


def file_page(
    session: Session,
    sql: Sql,
    owner_id: int | None,
    substring: str,
    day: tuple[datetime, datetime] | None,
    dataset_id: int | None,
    after_id: int,
    offset: int,
    limit: int,
) -> Found:
    """Ids of a page of files (oldest first) whose name contains ``substring`` or made on
    ``day``, in ``dataset_id`` if given, of ``owner_id``'s datasets (None: anyone's)."""
    checks = ["TRUE"]
    if owner_id is not None:
        checks.append(f"d.creator_id = {sql.bind(owner_id)}")
    if dataset_id is not None:
        checks.append(f"f.dataset_id = {sql.bind(dataset_id)}")
    if day is not None:
        start, end = (sql.bind(stored_time(moment)) for moment in day)
        checks.append(f"f.created_at >= {start} AND f.created_at < {end}")
    elif substring:
        checks.append(f"f.name ILIKE {sql.bind(like_pattern(substring))} ESCAPE '\\'")
    source = "datasetfile AS f JOIN dataset AS d ON d.id = f.dataset_id"
    where = " AND ".join(checks)
    count = bounded_count(session, sql, f"SELECT 1 FROM {source} WHERE {where}")
    if after_id:
        where += f" AND f.id > {sql.bind(after_id)}"
    rows = sql.all(
        session,
        f"SELECT f.id FROM {source} WHERE {where} ORDER BY f.id "
        f"LIMIT {int(limit)} OFFSET {int(offset)}",
    )
    return Found([row[0] for row in rows], count)
