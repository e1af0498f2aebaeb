"""The SQL of search on PostgreSQL: the same answers as :mod:`sqlite_search`, in PostgreSQL's SQL.

It exposes the functions :mod:`dataflow_lite.store.search` calls on a backend (``text_cond``,
``value_cond``, ``file_cond``, ``walk``, ``dataset_page``, ``file_page``, ``day_start``), with
the backend-neutral pieces (:class:`Sql`, :class:`Cond`, :class:`Walk`, :class:`Found`,
``WINDOW``) from :mod:`search_sql`, as the SQLite backend has them.

Words keep SQLite's semantics: each row lists the tokens FTS5 would make of it (revision 0015,
:mod:`pg_words`), a bare word matches a token it begins, a phrase its tokens in a row (checked
by a regular expression over the lowercased text). Metadata values are read as ``jsonb``; file
names by ``ILIKE`` (SQLite's ``LIKE`` ignores ASCII case), which the ``pg_trgm`` index of
revision 0007 serves. Datasets are listed by one query each, sorted by the
planner over the indexes of revisions 0006 and 0007: no ``INDEXED BY`` hints are needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlmodel import Session

from dataflow_lite.store import pg_words, search_sql, sqlite_words
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE
from dataflow_lite.store.query import Qualifier, Text
from dataflow_lite.store.search_sql import (
    TRIGRAM,
    Cond,
    Found,
    Sql,
    Walk,
    bounded_count,
    by_cost,
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
#: Characters of a text value its index holds (revision 0015).
TEXT_PREFIX = 200
#: How dear each kind of term's check is on one row (``Cond.cost``): a value by its key's
#: index, a row's tokens, a dataset's file names.
VALUE_COST, WORDS_COST, FILE_COST = 1, 2, 3
#: When every term lists more than WINDOW datasets: how far value lists are counted (in
#: windows), and how many of each list's first datasets are checked against the other terms.
LONG_LISTS, PROBE = 16, 200
#: The rows of a table whose share holding a word tells how its list is read (``_read_along``).
SAMPLE = 2000


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


#: The columns of a full-text row after its ``rowid``, as :func:`text_row` gives them.
TEXT_COLUMNS = ("body", "owner", "tokens")


def text_row(body: str, creator_id: int) -> tuple[str, str, str]:
    """A dataset's full-text row: its text, its owner (0012) and its tokens (0015)."""
    return body, search_sql.owner_text(creator_id), pg_words.vector(body, creator_id)


def append_text(session: Session, dataset_id: int, names: str) -> bool:
    """Append ``names`` to a dataset's full-text row, and their tokens to its tokens; False
    when it has none. The row's tokens stay listed while :func:`pg_words.listed` would list
    them for its whole text."""
    found = pg_words.listed(names)
    added = session.execute(
        text(
            f"UPDATE {SEARCH_TABLE} SET body = body || :names, tokens = CASE "
            "WHEN :listed AND octet_length(body) + :length <= :limit "
            "AND NOT tokens @@ CAST(:unlisted AS tsquery) THEN tokens || CAST(:tokens AS tsvector) "
            # The row's own owner lexeme (pg_words.owner_lexeme) beside MORE.
            "ELSE array_to_tsvector(ARRAY[:more, '#' || owner]) END WHERE rowid = :id"
        ),
        {
            "id": dataset_id,
            "names": names,
            "listed": found is not None,
            "length": len(names.encode()),
            "limit": pg_words.BODY_LIMIT,
            "more": pg_words.MORE,
            "unlisted": pg_words.quoted([pg_words.MORE]),
            "tokens": pg_words.quoted(found or []),
        },
    )
    return bool(getattr(added, "rowcount", 0))


def text_cond(
    sql: Sql, positive: Sequence[Text], negative: Sequence[Text], owner_id: int | None = None
) -> list[Cond]:
    """Full-text conditions: every positive term's tokens in the row, no negative term's.

    A row's listed tokens (:mod:`pg_words`) answer a term of one token exactly, and narrow a
    term of several to the rows holding them all, whose text is then matched for them in a
    row (a regular expression over the lowercased text, :func:`words_pattern`); so is the text
    of a row whose tokens are not listed. The list of ids reads the GIN index of the tokens,
    narrowed to ``owner_id``'s rows by their owner's lexeme (``owned_ids``).
    """
    if not positive and not negative:
        return []
    unlisted_row = pg_words.quoted([pg_words.MORE])
    parts: list[str] = []  # what a listed row's tokens must match
    phrases: list[str] = []  # and its text, for terms of several tokens
    unlisted: list[str] = []  # what the text of a row whose tokens are not listed must match
    listable = True
    for term, keep in [(t, True) for t in positive] + [(t, False) for t in negative]:
        pattern = words_pattern(term.words, not term.phrase)
        found = pg_words.phrase(term.words, not term.phrase)
        if pattern is None or found is None:
            # FTS5 holds no row for a term without a token: nothing matches it.
            if keep:
                return [Cond("FALSE")]
            continue
        query, width = found
        matched = f"lower(t.body) ~ {sql.bind(pattern)}"
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
        lists = [listed(owner)] if listable else []
        table = SEARCH_TABLE if rows is None else f"(SELECT * FROM {SEARCH_TABLE} {rows})"
        return " UNION ALL ".join(
            f"SELECT t.rowid AS id FROM {table} AS t WHERE {where}"
            for where in [*lists, more(owner)]
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

    As on SQLite: the shortest list of the terms that list their datasets drives. Its datasets
    that pass every other check (cheapest first) are read once when few may pass (a short list,
    or several long ones that may match few together) and sorted here; one long list is counted
    along, up to WINDOW + 1. Past WINDOW, the page is found by walking the datasets newest
    first, each checked against every term. With no list, the walk counts too.
    """
    if route.owner_check is not None:
        # A user's lists of their own datasets (words: their owner's lexeme) in place of
        # everyone's; the owner's check stays, for the rows a list may hold of no dataset.
        conds = [replace(cond, ids=cond.owned_ids) if cond.owned_ids else cond for cond in conds]
    conds = [_read_along(session, sql, cond) for cond in conds]
    listed = [cond for cond in conds if cond.ids]
    seek = []
    if after is not None:
        seek = [f"(d.created_at, d.id) < ({sql.bind(stored_time(after[0]))}, {sql.bind(after[1])})"]
    count = None
    if listed:
        # One list needs no measuring: counting along it with the other checks (below) tells
        # whether it drives, and its length alone would be one more pass over the same rows.
        driver = listed[0] if len(listed) == 1 else _driver(session, sql, route, conds)
        found = _passing(route, conds, driver)
        if len(listed) == 1:
            # Counted along the list (unsorted, stopping past WINDOW); a user's own list that
            # is the whole search alone, no dataset read.
            alone = len(conds) == 1 and route.checks == [route.owner_check] and driver.owned_ids
            count = bounded_count(session, sql, driver.ids if alone and driver.ids else found)
        if count is None or count <= search_sql.WINDOW:
            # The passing datasets read once (at most WINDOW + 1) and paged here.
            passing = [
                tuple(row) for row in sql.all(session, f"{found} LIMIT {search_sql.WINDOW + 1}")
            ]
            if len(passing) <= search_sql.WINDOW:
                ordered = sorted(passing, reverse=True)
                if after is not None:
                    position = (stored_time(after[0]), after[1])
                    ordered = [row for row in ordered if row < position]
                return Found([ident for _, ident in ordered[offset : offset + limit]], len(passing))
            count = len(passing)
    where = " AND ".join(["TRUE", *route.checks, *by_cost(conds)])
    if count is None:
        count = bounded_count(session, sql, f"SELECT 1 FROM dataset AS d WHERE {where}")
    # Many pass: walked newest first (the creator's or an instrument's index, then by time),
    # each dataset checked against every term until the page is full.
    rows = sql.all(
        session,
        f"SELECT d.id FROM dataset AS d WHERE {' AND '.join([where, *seek])} "
        f"ORDER BY d.created_at DESC, d.id DESC LIMIT {int(limit)} OFFSET {int(offset)}",
    )
    return Found([row[0] for row in rows], count)


def _read_along(session: Session, sql: Sql, cond: Cond) -> Cond:
    """``cond`` with its list read along its table when a twentieth of the first rows hold it:
    a GIN index answers a long list with a bitmap of all of it before a row is counted (45 ms
    for a user's word in a tenth of a million rows, where reading rows until WINDOW pass takes
    20)."""
    if cond.scanned_ids is None:
        return cond
    first = cond.scanned_ids.replace("{rows}", f"LIMIT {SAMPLE}")
    if sql.scalar(session, f"SELECT count(*) FROM ({first}) AS sample") * 20 < SAMPLE:
        return cond
    return replace(cond, ids=cond.scanned_ids.replace("{rows}", "OFFSET 0"))


def _driver(session: Session, sql: Sql, route: Walk, conds: Sequence[Cond]) -> Cond:
    """The list of several to read (they may match few together).

    Each is counted to WINDOW + 1, the cheapest to read first: the first that holds at most
    WINDOW drives. When every one is longer, the one expected to be read least drives: its
    length (value lists, read from their index alone, are counted on to LONG_LISTS windows), or the
    entries it takes to find WINDOW that pass, judged by how many of its first PROBE entries
    pass every other term.
    """
    listed = sorted((cond for cond in conds if cond.ids), key=lambda cond: cond.cost)
    for cond in listed:
        if list_size(session, sql, cond) <= search_sql.WINDOW:
            return cond
    longest = LONG_LISTS * search_sql.WINDOW
    sizes = []
    for cond in listed:
        size = list_size(session, sql, cond, longest) if cond.cost == VALUE_COST else longest
        first = f"SELECT count(*) FROM ({_passing(route, conds, cond, PROBE)}) AS p"
        if passing := sql.scalar(session, first):
            size = min(size, search_sql.WINDOW * PROBE // passing)
        sizes.append(size)
    shortest = min(range(len(listed)), key=lambda index: (sizes[index], listed[index].cost))
    return listed[shortest]


def _passing(route: Walk, conds: Sequence[Cond], driver: Cond, taken: int | None = None) -> str:
    """The datasets of ``driver``'s list (its first ``taken``) that pass every other check."""
    rest = by_cost(cond for cond in conds if cond is not driver)
    listed = driver.ids if taken is None else f"SELECT * FROM ({driver.ids}) AS l LIMIT {taken}"
    return (
        f"SELECT d.created_at, d.id FROM ({listed}) AS s JOIN dataset AS d ON d.id = s.id "
        f"WHERE {' AND '.join(['TRUE', *route.checks, *rest])}"
    )


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
