"""The SQL of search on PostgreSQL: the same answers as :mod:`sqlite_search`, in PostgreSQL's SQL.

It exposes the functions :mod:`dataflow_lite.store.search` calls on a backend (``text_cond``,
``value_cond``, ``file_cond``, ``walk``, ``dataset_page``, ``file_page``, ``day_start``, and the
full-text row's writers), with the backend-neutral pieces (:class:`Sql`, :class:`Cond`,
:class:`Walk`, :class:`Found`, ``WINDOW``) from :mod:`search_sql`, as the SQLite backend has
them; a page is found by :mod:`pg_pages`.

Words keep SQLite's semantics: each row lists the tokens FTS5 would make of it (revision 0015,
:mod:`pg_words`), a bare word matches a token it begins, a phrase its tokens in a row (checked
by ``LIKE`` over the row's text, kept as those tokens since 0016). Metadata values are read as
``jsonb``, through indexes of each owner's values by key (0015); file names by ``ILIKE``
(SQLite's ``LIKE`` ignores ASCII case), which the ``pg_trgm`` index of revision 0007 serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection
from sqlmodel import Session

from dataflow_lite.store import pg_words
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE
from dataflow_lite.store.pg_pages import (
    FILE_COST,
    VALUE_COST,
    WORDS_COST,
    dataset_page,
    stored_time,
)
from dataflow_lite.store.pg_words import TEXT_COLUMNS, append_text, row_matches, text_row
from dataflow_lite.store.query import Qualifier, Text
from dataflow_lite.store.search_sql import (
    TRIGRAM,
    Cond,
    Found,
    Sql,
    Walk,
    bounded_count,
    like_pattern,
)

# Re-exported: what :mod:`dataflow_lite.store.search` calls on a backend and other modules hold.
__all__ = [
    "FTS_TABLES",
    "TEXT_COLUMNS",
    "append_text",
    "dataset_page",
    "row_matches",
    "text_row",
]

#: Tables whose index is made apart from their rows: none (PostgreSQL's indexes hold what the
#: rows hold, the tokens among them).
FTS_TABLES: tuple[str, ...] = ()


_VALUE = "(m.value::jsonb)"
_KIND = f"jsonb_typeof({_VALUE})"
_NUMBER = f"{_KIND} = 'number'"
_TEXT = f"{_KIND} = 'string'"
_SCALAR = f"({_VALUE} #>> '{{}}')"
#: A number value as ``numeric`` (NULL for any other type: PostgreSQL may test in any order,
#: so the cast is guarded by CASE rather than by an AND beside it).
_NUMERIC = f"(CASE WHEN {_NUMBER} THEN {_SCALAR}::numeric END)"
_DATE = "'^[0-9]{4}-[0-9]{2}-[0-9]{2}'"
#: Ends a term's per-dataset check (``EXISTS (...)``): PostgreSQL does not turn a subquery with
#: an OFFSET into a join, so the check stays a lookup by the dataset's id. As a join, the planner
#: (misled by the typed indexes' estimates: 25 rows for 100,000) read a term's whole list and
#: sorted it where walking the newest datasets finds a page in a few hundred lookups.
PER_ROW = " OFFSET 0"
#: Characters of a text value its index holds (revision 0015).
TEXT_PREFIX = 200


def day_start(when: date) -> datetime:
    """The first moment of a UTC day, as a time PostgreSQL compares with ``created_at``."""
    return datetime(when.year, when.month, when.day, tzinfo=UTC)


def texts_written(db: Session | Connection, bodies: Sequence[str]) -> None:
    """Nothing to keep: PostgreSQL's index answers a word's prefix as it answers a token, where
    SQLite keeps the tokens each word searched begins (:mod:`sqlite_prefixes`)."""


def text_cond(
    session: Session,
    sql: Sql,
    positive: Sequence[Text],
    negative: Sequence[Text],
    owner_id: int | None = None,
) -> list[Cond]:
    """Full-text conditions: every positive term's tokens in the row, no negative term's.

    A row's listed tokens (:mod:`pg_words`) answer a term of one token exactly, and narrow a
    term of several to the rows holding them all, whose text is then matched for them in a
    row (:func:`pg_words.pattern`); so is the text of a row whose tokens are not listed. The
    list of ids reads the GIN index of the tokens, narrowed to ``owner_id``'s rows by their
    owner's lexeme (``owned_ids``). ``session`` is not read: the index answers a prefix itself.
    """
    if not positive and not negative:
        return []
    unlisted_row = pg_words.quoted([pg_words.MORE])
    parts: list[str] = []  # what a listed row's tokens must match
    phrases: list[str] = []  # and its text, for terms of several tokens
    unlisted: list[str] = []  # what the text of a row whose tokens are not listed must match
    listable = True
    for term, keep in [(t, True) for t in positive] + [(t, False) for t in negative]:
        pattern = pg_words.pattern(term.words, not term.phrase)
        found = pg_words.phrase(term.words, not term.phrase)
        if pattern is None or found is None:
            # FTS5 holds no row for a term without a token: nothing matches it.
            if keep:
                return [Cond("FALSE")]
            continue
        query, width = found
        matched = f"t.body LIKE {sql.bind(pattern)}"
        unlisted.append(matched if keep else f"NOT {matched}")
        if not query:  # a token too long for any listed row to hold
            listable = listable and not keep
            continue
        if width == 1:
            parts.append(query if keep else f"!{query}")
        elif keep:
            parts.append(query)
            phrases.append(matched)
        else:
            phrases.append(f"NOT (t.tokens @@ {_tsquery(sql, query)} AND {matched})")

    def listed(owner: str | None = None, guard: bool = False) -> str:
        # An unlisted row holds no token: it matches no positive one (so a list needs no
        # guard), but every negative one would pass it unless it is kept out (``guard``).
        tokens = [f"!{unlisted_row}"] if guard else []
        query = " & ".join([*tokens, *parts])
        return " AND ".join([f"t.tokens @@ {_tsquery(sql, query, owner)}", *phrases])

    def more(owner: str | None = None) -> str:
        return " AND ".join([f"t.tokens @@ {_tsquery(sql, unlisted_row, owner)}", *unlisted])

    either = f"({listed(guard=True)}) OR ({more()})" if listable else more()
    check = f"EXISTS (SELECT 1 FROM {SEARCH_TABLE} AS t WHERE t.rowid = d.id AND ({either})" \
            f"{PER_ROW})"  # fmt: skip
    if not positive:
        return [Cond(check, cost=WORDS_COST)]

    def ids(owner: str | None = None, rows: str | None = None) -> str:
        # ``rows``: the listed rows read along the table; the unlisted ones (few, if any) are
        # always looked up in the index.
        table = SEARCH_TABLE if rows is None else f"(SELECT * FROM {SEARCH_TABLE} {rows})"
        lists = [(table, listed(owner))] if listable else []
        return " UNION ALL ".join(
            f"SELECT t.rowid AS id FROM {source} AS t WHERE {where}"
            for source, where in [*lists, (SEARCH_TABLE, more(owner))]
        )

    owner = None if owner_id is None else pg_words.owner_lexeme(owner_id)
    return [Cond(check, ids(), cost=WORDS_COST, owned_ids=owner and ids(owner),
                 scanned_ids=ids(owner, "{rows}"))]  # fmt: skip


def _tsquery(sql: Sql, query: str, owner: str | None = None) -> str:
    """``query`` (``tsquery`` text), narrowed to the rows holding the lexeme ``owner``."""
    if owner is not None:
        query = f"({query}) & '{owner}'"
    return f"CAST({sql.bind(query)} AS tsquery)"


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
    # The type test first: it is the typed index's own condition (it is partial).
    return f"{_NUMBER} AND {_NUMERIC} {op} {_as_numeric(sql, value)}"


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
    # SQLite's lower() folds ASCII only: so does this, for the same answers. The text index
    # holds a value's first TEXT_PREFIX characters (revision 0015), and the row the whole.
    folded = "translate({}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
    mine, wanted = folded.format(_SCALAR), folded.format(sql.bind(term.raw))
    branches = [
        f"{_TEXT} AND left({mine}, {TEXT_PREFIX}) = left({wanted}, {TEXT_PREFIX}) "
        f"AND {mine} = {wanted}"
    ]
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
    """A metadata qualifier: the dataset has a value of ``term.key`` that matches. Its list
    reads the typed indexes (key, owner, value) of revision 0015: ``owner_id``'s range of each,
    or every user's (an admin's search)."""
    key = sql.bind(term.key)
    branches = _value_branches(sql, term)
    either = " OR ".join(f"({branch})" for branch in branches)
    check = (
        "EXISTS (SELECT 1 FROM metadatavalue AS m "
        f"WHERE m.dataset_id = d.id AND m.field_name = {key} AND ({either}){PER_ROW})"
    )
    if term.negated:
        return Cond("NOT " + check, cost=VALUE_COST)
    # One SELECT per branch, so that each reads its own index (typed number, text, key).
    owners = 'm.owner_id IN (SELECT id FROM "user")' if owner_id is None else \
             f"m.owner_id = {sql.bind(owner_id)}"  # fmt: skip
    ids = " UNION ".join(
        f"SELECT m.dataset_id AS id FROM metadatavalue AS m WHERE m.field_name = {key} "
        f"AND {owners} AND {branch}"
        for branch in branches
    )
    return Cond(check, ids, cost=VALUE_COST, owned_ids=None if owner_id is None else ids)


def file_cond(sql: Sql, substring: str, negated: bool) -> Cond:
    """``file:TEXT``: the dataset has a file whose name contains TEXT."""
    bound = sql.bind(like_pattern(substring))
    check = (
        "EXISTS (SELECT 1 FROM datasetfile AS f "
        f"WHERE f.dataset_id = d.id AND f.name ILIKE {bound} ESCAPE '\\'{PER_ROW})"
    )
    if negated:
        return Cond("NOT " + check, cost=FILE_COST)
    if len(substring) < TRIGRAM:  # no trigram to look up: checked row by row only
        return Cond(check, cost=FILE_COST)
    ids = f"SELECT DISTINCT f.dataset_id AS id FROM datasetfile AS f WHERE f.name ILIKE {bound} " \
          "ESCAPE '\\'"  # fmt: skip
    return Cond(check, ids, cost=FILE_COST)


def walk(sql: Sql, owner_id: int | None, instrument: int | None | bool) -> Walk:
    """The row checks of the owner and instrument (``instrument`` False: any)."""
    checks = []
    if instrument is not False:
        if instrument is None:
            checks.append("d.instrument_id IS NULL")
        else:
            checks.append(f"d.instrument_id = {sql.bind(instrument)}")
    if owner_id is None:
        return Walk("", checks)
    checks.append(f"d.creator_id = {sql.bind(owner_id)}")
    return Walk("", checks, checks[-1])


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
