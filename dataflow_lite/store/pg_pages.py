"""How PostgreSQL finds a page of datasets from the conditions :mod:`pg_search` builds.

As on SQLite (:mod:`sqlite_pages`), no page counts or sorts a million rows: the shortest list
of the terms that list their datasets drives, counted no further than WINDOW + 1, and past the
window the page is found by walking the datasets newest first, each checked against every term.
A user's lists are their own (revision 0015); a word most rows hold is read along its table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlmodel import Session

from dataflow_lite.store import search_sql
from dataflow_lite.store.search_sql import Cond, Found, Sql, Walk, bounded_count, by_cost, list_size

#: How dear each kind of term's check is on one row (``Cond.cost``): a value by its key's
#: index, a row's tokens, a dataset's file names.
VALUE_COST, WORDS_COST, FILE_COST = 1, 2, 3
#: When every term lists more than WINDOW datasets: how far value lists are counted (in
#: windows), and how many of each list's first datasets are checked against the other terms.
LONG_LISTS, PROBE = 16, 200
#: The rows of a table whose share holding a word tells how its list is read (``_read_along``).
SAMPLE = 2000


def stored_time(moment: datetime) -> datetime:
    """A time as PostgreSQL compares it (with its zone): the moment itself, in UTC."""
    return moment.astimezone(UTC)


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
    conds = listing(session, sql, route, conds)
    listed = [cond for cond in conds if cond.ids]
    seek = []
    if after is not None:
        seek = [f"(d.created_at, d.id) < ({sql.bind(stored_time(after[0]))}, {sql.bind(after[1])})"]
    count = None
    if listed:
        driver = driving_list(session, sql, route, conds)
        found = passing_sql(route, conds, driver)
        if len(listed) == 1:
            # One list is not measured first: it is counted along (unsorted, stopping past
            # WINDOW) with the other checks; a user's own list that is the whole search alone,
            # no dataset read.
            alone = len(conds) == 1 and route.checks == [route.owner_check] and driver.owned_ids
            assert driver.ids is not None
            count = bounded_count(session, sql, driver.ids if alone else found)
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


def listing(session: Session, sql: Sql, route: Walk, conds: Sequence[Cond]) -> list[Cond]:
    """``conds`` with the lists to read: a user's lists of their own datasets (words: their
    owner's lexeme) in place of everyone's (the owner's check stays, for the rows a list may
    hold of no dataset), and a word most rows hold read along its table."""
    if route.owner_check is not None:
        conds = [replace(cond, ids=cond.owned_ids) if cond.owned_ids else cond for cond in conds]
    return [_read_along(session, sql, cond) for cond in conds]


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


def driving_list(session: Session, sql: Sql, route: Walk, conds: Sequence[Cond]) -> Cond:
    """The list to read: the one there is, or of several (which may match few together) the
    first that holds at most WINDOW, counted cheapest first. When every one is longer, the one
    expected to be read least: by its length (value lists, read from their index alone, are
    counted on to LONG_LISTS windows), or the entries it takes to find WINDOW that pass, judged
    by how many of its first PROBE entries pass every other term.
    """
    listed = sorted((cond for cond in conds if cond.ids), key=lambda cond: cond.cost)
    if len(listed) == 1:
        return listed[0]
    for cond in listed:
        if list_size(session, sql, cond) <= search_sql.WINDOW:
            return cond
    longest = LONG_LISTS * search_sql.WINDOW
    sizes = []
    for cond in listed:
        size = list_size(session, sql, cond, longest) if cond.cost == VALUE_COST else longest
        first = f"SELECT count(*) FROM ({passing_sql(route, conds, cond, PROBE)}) AS p"
        if passing := sql.scalar(session, first):
            size = min(size, search_sql.WINDOW * PROBE // passing)
        sizes.append(size)
    shortest = min(range(len(listed)), key=lambda index: (sizes[index], listed[index].cost))
    return listed[shortest]


def passing_sql(route: Walk, conds: Sequence[Cond], driver: Cond, taken: int | None = None) -> str:
    """The datasets of ``driver``'s list (its first ``taken``) that pass every other check."""
    rest = by_cost(cond for cond in conds if cond is not driver)
    listed = driver.ids if taken is None else f"SELECT * FROM ({driver.ids}) AS l LIMIT {taken}"
    return (
        f"SELECT d.created_at, d.id FROM ({listed}) AS s JOIN dataset AS d ON d.id = s.id "
        f"WHERE {' AND '.join(['TRUE', *route.checks, *rest])}"
    )
