"""The SQL of search on SQLite: FTS5 for words, a trigram index for file names, typed values.

Each term becomes a condition here (FTS5 ``MATCH``, ``json_type`` and ``json_extract`` over
the typed value indexes of revision 0006, ``INDEXED BY``); :mod:`sqlite_pages` finds a page
from them, reading their lists as :mod:`sqlite_lists` does and words as :mod:`sqlite_words`.
A PostgreSQL backend (tsvector, pg_trgm, jsonb) replaces these modules, :mod:`pg_search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text
from sqlmodel import Session

from dataflow_lite.store import search_sql, sqlite_prefixes, sqlite_words
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE
from dataflow_lite.store.query import Qualifier, Text
from dataflow_lite.store.search_sql import (
    TRIGRAM,
    Cond,
    Found,
    Sql,
    Walk,
    bounded_count,
    like_pattern,
    list_size,
)
from dataflow_lite.store.sqlite_lists import FILE_COST, VALUE_COST, WORDS_COST
from dataflow_lite.store.sqlite_pages import dataset_page, stored_time

__all__ = [
    "TRIGRAM", "Cond", "Found", "Sql", "Walk", "bounded_count", "dataset_page", "like_pattern",
    "list_size",
]  # fmt: skip

#: The trigram index of file names (revision 0006), kept by triggers on ``datasetfile``.
FILE_TABLE = "file_name_text"
#: The FTS5 tables, whose index :func:`reindex_table` makes again.
FTS_TABLES = (SEARCH_TABLE, FILE_TABLE)
#: How much FTS5 gathers in memory before it writes a segment of its index (``hashsize``) while
#: ``rebuild`` reads every row, and what it takes again after (its default): at a million
#: datasets, 64 MiB took the trigram index of 3,000,000 file names from 9.7 s to 4.6, the
#: datasets' text from 5.7 s to 4.4.
REBUILD_HASH_BYTES, HASH_BYTES = 64 << 20, 1 << 20
#: A number value, as the typed number index (revision 0006) holds them, and as a dataset's own
#: value is checked: values are stored as compact JSON text, so a number is exactly a value
#: starting with ``-`` or a digit, and the check parses its JSON once, not twice. (SQLite's
#: ``CAST`` would parse none, but reads some decimals a bit apart from its JSON parser.)
_IS_NUMBER, _NUMBER = "json_type(m.value) IN ('integer', 'real')", "json_extract(m.value, '$')"
_IS_NUMBER_TEXT = "m.value GLOB '[-0-9]*'"
_TEXT = "json_type({v}) = 'text'"
_DATE_GLOB = "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'"


def day_start(when: date) -> str:
    """The first moment of a UTC day, as stored."""
    return stored_time(datetime(when.year, when.month, when.day, tzinfo=UTC))


def fts_words(
    term: Text, prefix: bool = True, begun: dict[str, list[str] | None] | None = None
) -> str:
    """An FTS5 phrase for a term: a bare word matches as a prefix, a phrase as it is.

    A bare word of one token that ``begun`` (:func:`sqlite_prefixes.searched`) lists the tokens
    of is those tokens OR'ed together, which FTS5 seeks rather than merging them all first.
    Each text is one quoted FTS5 string (quotes doubled), so no FTS5 syntax (``OR``, ``NEAR(``,
    ``*``, ``col:``) in a search reaches the index as syntax.
    """
    quoted = _quoted(term.words)
    if term.phrase or not prefix:
        return quoted
    if (token := _one_token(term)) is not None and (tokens := (begun or {}).get(token)):
        return "(" + " OR ".join(map(_quoted, tokens)) + ")"
    return quoted + "*"


def _quoted(words: str) -> str:
    return '"' + words.replace('"', '""') + '"'


def _one_token(term: Text) -> str | None:
    """The token a bare word is, when it is one (``S-16`` is two)."""
    tokens = sqlite_words.tokens(term.words)
    return tokens[0] if len(tokens) == 1 and not term.phrase else None


#: The columns of a full-text row after its ``rowid``, as :func:`text_row` gives them.
TEXT_COLUMNS = ("body", "owner")


def text_row(body: str, creator_id: int) -> tuple[str, str]:
    """A dataset's full-text row: its text and its owner (revision 0012)."""
    return body, search_sql.owner_text(creator_id)


def row_matches(row: Sequence[Any], body: str, creator_id: int) -> bool:
    """Whether a stored full-text row (its :data:`TEXT_COLUMNS`) holds what :func:`text_row`
    makes of ``body``, its tokens in any order (a file added later appends its names)."""
    held, owner = row
    return search_sql.same_row(
        owner, sqlite_words.tokens(held), sqlite_words.tokens(body), creator_id
    )


def append_text(session: Session, dataset_id: int, names: str) -> bool:
    """Append ``names`` to a dataset's full-text row; False when it has none."""
    added = session.execute(
        text(f"UPDATE {SEARCH_TABLE} SET body = body || :names WHERE rowid = :id"),
        {"id": dataset_id, "names": names},
    )
    return bool(getattr(added, "rowcount", 0))


def reindex_table(session: Session, table: str) -> None:
    """Have FTS5 index every row of ``table`` (one of :data:`FTS_TABLES`) again from the text
    it holds (``rebuild``). Once the tokenizer changed (another SQLite library), deleting a row
    took out the entries the new tokenizer makes of its text, not those the old one made: only
    this removes those."""
    assert table in FTS_TABLES
    for statement in rebuild_statements(table):
        session.execute(text(statement))
    if table == SEARCH_TABLE:
        sqlite_prefixes.forget(session)


def texts_written(db: Session | Connection, bodies: Sequence[str]) -> None:
    """Full-text rows were written (or appended to) with ``bodies``: keep the tokens each word
    searched begins (:func:`sqlite_prefixes.note`)."""
    sqlite_prefixes.note(db, bodies)


def rebuild_statements(table: str) -> tuple[str, ...]:
    """The statements that have FTS5 index every row of ``table`` again."""
    return (
        f"INSERT INTO {table} ({table}, rank) VALUES ('hashsize', {REBUILD_HASH_BYTES})",
        f"INSERT INTO {table} ({table}) VALUES ('rebuild')",
        f"INSERT INTO {table} ({table}, rank) VALUES ('hashsize', {HASH_BYTES})",
    )


def text_cond(
    session: Session,
    sql: Sql,
    positive: Sequence[Text],
    negative: Sequence[Text],
    owner_id: int | None = None,
) -> list[Cond]:
    """Full-text conditions: the positive words as one FTS5 query (minus the negative ones).

    A row is checked by :mod:`dataflow_lite.store.sqlite_words` (FTS5's rules in Python, on
    the row's text); the list of ids is FTS5's, and its lower bound the same words as whole
    tokens, which FTS5 counts without merging every token a prefix begins. With ``owner_id``
    the list holds that user's datasets alone (revision 0012's ``owner`` column), so FTS5
    counts a user's matches without a dataset row or a call into Python per candidate. The
    words are confined to ``body``: no search can reach the ``owner`` column. A bare word is
    asked as the tokens it begins once they are kept (:mod:`sqlite_prefixes`).
    """
    if not positive and not negative:
        return []
    words = sqlite_words.spec(
        [(term.words, not term.phrase) for term in positive],
        [(term.words, not term.phrase) for term in negative],
    )
    check = (
        f"{sqlite_words.FUNCTION}((SELECT body FROM {SEARCH_TABLE} WHERE rowid = d.id), "
        f"{sql.bind(words)})"
    )
    if not positive:
        return [Cond(check, cost=WORDS_COST)]
    begun = sqlite_prefixes.searched(
        session, [token for term in (*positive, *negative) if (token := _one_token(term))]
    )

    def listing(prefix: bool, owner: int | None = None) -> str:
        match = " AND ".join(fts_words(term, prefix, begun) for term in positive)
        match = (
            "(" + match + ")" + "".join(" NOT " + fts_words(term, begun=begun) for term in negative)
        )
        match = "{body} : (" + match + ")"
        if owner is not None:
            match += ' AND {owner} : "' + search_sql.owner_text(owner) + '"'
        return (
            f"SELECT rowid AS id FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH {sql.bind(match)}"
        )

    lower = any(not term.phrase for term in positive)
    whole = listing(prefix=False) if lower else None
    # Only for counting a long list: joined with the owner's half-million entries, FTS5 reads
    # more than the words alone when they are few together (two dense words: 32 ms, not 7).
    if owner_id is None:
        return [Cond(check, listing(prefix=True), whole, cost=WORDS_COST)]
    owned = listing(prefix=True, owner=owner_id)
    owned_lower = listing(prefix=False, owner=owner_id) if lower else None
    return [Cond(check, listing(prefix=True), whole, WORDS_COST, owned, owned_lower)]


def _date_bounds(sql: Sql, value: str, low: date | None, high: date | None) -> str:
    """Text values that are dates (or times) from day ``low`` to day ``high``, inclusive."""
    parts = [_TEXT.format(v="m.value"), f"json_extract(m.value, '$') GLOB {_DATE_GLOB}"]
    if low is not None:
        parts.append(f"{value} >= {sql.bind(low.isoformat())}")
    else:
        parts.append(f"{value} >= '0'")
    if high is not None:
        parts.append(f"{value} < {sql.bind((high + timedelta(days=1)).isoformat())}")
    else:
        parts.append(f"{value} < ':'")  # after every text starting with a digit
    return " AND ".join(parts)


#: The indexes that list a key's values: typed numbers, lowered text, and every value.
_NUMBERS, _TEXTS, _ALL = (
    "ix_metadatavalue_number",
    "ix_metadatavalue_text",
    "ix_metadatavalue_key_value",
)


def _bound(number: Any) -> Any:
    """A number of ``q`` as SQLite compares it: an integer past 64 bits, which SQLite cannot
    bind, as the float its JSON functions read a stored one as."""
    return float(number) if isinstance(number, int) and not -(2**63) <= number < 2**63 else number


def _value_branches(sql: Sql, term: Qualifier) -> list[tuple[str, str]]:
    """What a metadata value ``m`` must be, as alternatives (any one of them matches), each
    with the index that lists the values it can match."""
    number, is_number = _NUMBER, _IS_NUMBER  # as the typed number index holds them
    lowered = "lower(json_extract(m.value, '$'))"
    ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    if term.op == "has":
        return [(_ALL, "1")]
    if term.op == "range":
        low, high = term.low, term.high
        if isinstance(low, date) or isinstance(high, date):  # then both ends are (query.py)
            days = [end if isinstance(end, date) else None for end in (low, high)]
            return [(_TEXTS, _date_bounds(sql, lowered, *days))]
        parts = [is_number]
        if low is not None:
            parts.append(f"{number} >= {sql.bind(_bound(low))}")
        if high is not None:
            parts.append(f"{number} <= {sql.bind(_bound(high))}")
        return [(_NUMBERS, " AND ".join(parts))]
    value = term.value
    if term.op in ops:
        if isinstance(value, date):
            # After day D is from the next day on; up to day D includes all of it.
            low = value + timedelta(days=1) if term.op == "gt" else value
            if term.op in ("gt", "ge"):
                return [(_TEXTS, _date_bounds(sql, lowered, low, None))]
            return [(_TEXTS, _date_bounds(sql, lowered, None, value - timedelta(days=1)
                                          if term.op == "lt" else value))]  # fmt: skip
        return [(_NUMBERS, f"{is_number} AND {number} {ops[term.op]} {sql.bind(_bound(value))}")]
    # Equality: the text as typed, without regard to (ASCII) case, and its typed readings.
    branches = [
        (_TEXTS, f"{_TEXT.format(v='m.value')} AND {lowered} = lower({sql.bind(term.raw)})")
    ]
    if isinstance(value, date):
        branches.append((_TEXTS, _date_bounds(sql, lowered, value, value)))
    elif isinstance(value, int | float):
        branches.append((_NUMBERS, f"{is_number} AND {number} = {sql.bind(_bound(value))}"))
    elif term.raw.lower() in ("true", "false"):
        branches.append((_ALL, f"json_type(m.value) = {sql.bind(term.raw.lower())}"))
    elif term.raw.lower() == "null":
        # Earlier releases stored a null sent through the API as SQL NULL, not JSON null.
        branches.append((_ALL, "(m.value IS NULL OR json_type(m.value) = 'null')"))
    return branches


def _checked(index: str, branch: str) -> str:
    """A branch as one dataset's value is checked: a number's type told from its text."""
    return branch.replace(_IS_NUMBER, _IS_NUMBER_TEXT) if index == _NUMBERS else branch


def value_cond(sql: Sql, term: Qualifier, owner_id: int | None = None) -> Cond:
    """A metadata qualifier: the dataset has a value of ``term.key`` that matches.

    The typed indexes list each owner's values apart (revision 0014): a user's list is one
    range of them, and holds that user's datasets alone; everyone's is a range per user.
    """
    key = sql.bind(term.key)
    branches = _value_branches(sql, term)
    either = " OR ".join(f"({_checked(index, branch)})" for index, branch in branches)
    # The per-row check seeks the dataset's values of the key, never a scan of the key's values.
    check = (
        f"EXISTS (SELECT 1 FROM metadatavalue AS m INDEXED BY {_ALL} "
        f"WHERE m.field_name = {key} AND m.dataset_id = d.id AND ({either}))"
    )
    if term.negated:
        return Cond("NOT " + check, cost=VALUE_COST)
    # One SELECT per branch, each naming its index (typed number, lower text, key): the
    # catalog is not ANALYZEd, and the planner would take the covering (key, dataset, value)
    # index for any of them, reading every value of the key (1 s at a million datasets).
    owners = "m.owner_id IN (SELECT id FROM user)" if owner_id is None else \
             f"m.owner_id = {sql.bind(owner_id)}"  # fmt: skip
    ids = " UNION ".join(
        f"SELECT m.dataset_id AS id FROM metadatavalue AS m INDEXED BY {index} "
        f"WHERE m.field_name = {key} AND {branch}{'' if index == _ALL else ' AND ' + owners}"
        for index, branch in branches
    )
    owned = owner_id is not None and all(index != _ALL for index, _ in branches)
    return Cond(check, ids, cost=VALUE_COST, owned_ids=ids if owned else None)


def file_ids(sql: Sql, substring: str) -> str:
    """SQL listing the ids (column ``id``) of files whose name contains ``substring``."""
    if len(substring) >= TRIGRAM:
        bound = sql.bind('"' + substring.replace('"', '""') + '"')
        return f"SELECT rowid AS id FROM {FILE_TABLE} WHERE {FILE_TABLE} MATCH {bound}"
    bound = sql.bind(like_pattern(substring))
    return f"SELECT id FROM datasetfile WHERE name LIKE {bound} ESCAPE '\\'"


def file_cond(sql: Sql, substring: str, negated: bool) -> Cond:
    """``file:TEXT``: the dataset has a file whose name contains TEXT."""
    bound = sql.bind(like_pattern(substring))
    check = (
        "EXISTS (SELECT 1 FROM datasetfile AS f INDEXED BY ix_datasetfile_dataset_id "
        f"WHERE f.dataset_id = d.id AND f.name LIKE {bound} ESCAPE '\\')"
    )
    if negated:
        return Cond("NOT " + check, cost=FILE_COST)
    ids = f"SELECT DISTINCT f.dataset_id AS id FROM ({file_ids(sql, substring)}) AS found " \
          "CROSS JOIN datasetfile AS f ON f.id = found.id"  # fmt: skip
    return Cond(check, ids, cost=FILE_COST)


def walk(sql: Sql, owner_id: int | None, instrument: int | None | bool) -> Walk:
    """The index to walk and the row checks it implies (``instrument`` False: any).

    ``created_at`` alone orders the admin's walk; a user's datasets, or one instrument's, have
    their own ``(…, created_at)`` index. SQLite adds the row id to each, which breaks ties.
    """
    checks = []
    index = "ix_dataset_created_at"
    if instrument is not False:
        if instrument is None:
            checks.append("d.instrument_id IS NULL")
        else:
            checks.append(f"d.instrument_id = {sql.bind(instrument)}")
        index = "ix_dataset_instrument_created"
    if owner_id is None:
        return Walk(index, checks)
    owner = sql.bind(owner_id)
    checks.append(f"d.creator_id = {owner}")
    # A list's candidate is checked in the narrow (creator, id) index rather than its row:
    # 10,000 candidates cost 24 ms instead of 44 at a million datasets.
    seek = ("EXISTS (SELECT 1 FROM dataset AS o INDEXED BY ix_dataset_creator_id "
            f"WHERE o.creator_id = {owner} AND o.id = d.id)")  # fmt: skip
    return Walk("ix_dataset_creator_created", checks, checks[-1], seek)


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
    checks = ["1"]
    source = "datasetfile AS f CROSS JOIN dataset AS d ON d.id = f.dataset_id"
    order = "f.id"
    if owner_id is not None:
        checks.append(f"d.creator_id = {sql.bind(owner_id)}")
    if dataset_id is not None:
        checks.append(f"f.dataset_id = {sql.bind(dataset_id)}")
    if day is not None:
        start, end = (sql.bind(stored_time(moment)) for moment in day)
        checks.append(f"f.created_at >= {start} AND f.created_at < {end}")
        source = "datasetfile AS f INDEXED BY ix_datasetfile_created_at " \
                 "CROSS JOIN dataset AS d ON d.id = f.dataset_id"  # fmt: skip
    elif substring and (dataset_id is not None or len(substring) < TRIGRAM):
        # One dataset's files are few; a name shorter than a trigram is matched by scanning.
        checks.append(f"f.name LIKE {sql.bind(like_pattern(substring))} ESCAPE '\\'")
    elif substring:
        # The trigram index lists the files in id order: no sort, and a page stops early.
        source = f"({file_ids(sql, substring)}) AS s CROSS JOIN datasetfile AS f " \
                 "ON f.id = s.id CROSS JOIN dataset AS d ON d.id = f.dataset_id"  # fmt: skip
        order = "s.id"
    where = " AND ".join(checks)
    count = bounded_count(session, sql, f"SELECT 1 FROM {source} WHERE {where}")
    if after_id:
        where += f" AND {order} > {sql.bind(after_id)}"
    rows = sql.all(
        session,
        f"SELECT f.id FROM {source} WHERE {where} ORDER BY {order} "
        f"LIMIT {int(limit)} OFFSET {int(offset)}",
    )
    return Found([row[0] for row in rows], count)
