"""How SQLite finds a page of datasets from the conditions :mod:`sqlite_search` builds.

How a page is found without counting or sorting a million rows: each term that can list its
datasets (words, a metadata key, a file name) first counts them, stopping at :data:`WINDOW` + 1.
When the smallest such list holds at most :data:`WINDOW` datasets it drives the query (its
datasets are looked up by id, checked against the other terms and sorted: at most WINDOW
rows). When every list is longer, each is counted on (to the shortest so far) and the
shortest drives, read once, unless a quarter of the first list's first datasets pass (then it is
counted along at once); if more than WINDOW pass, or one long list is all there is, the
datasets are walked newest first along an index on ``created_at`` (the user's own, or an
instrument's) and each is checked against every term, cheapest check first, so a page costs
about ``page size / share of datasets that match`` index steps. Counting stops at WINDOW + 1.
A user's search of one term whose list of the user's own datasets (revisions 0012, 0014) is its
whole answer counts that list alone; past the first page of a long list, it reads its page
from a words list in descending id where ids follow creation order (revision 0018).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlmodel import Session

from dataflow_lite.store import search_sql
from dataflow_lite.store.search_sql import Cond, Found, Sql, Walk, bounded_count, list_size
from dataflow_lite.store.sqlite_lists import (
    FILE_COST,
    WORDS_COST,
    count_passing,
    counted_list,
    deep_page,
    driven,
    exact_sizes,
    mostly_passing,
    passing_rows,
    walk_count,
)

_STORED = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy writes a DateTime into SQLite
#: Where SQLite keeps from which dataset on ids follow creation order (revision 0018).
ORDER_TABLE = "dataset_order"
#: From this offset a page by number looks its words up in their list (``sqlite_lists.deep_page``).
DEEP_OFFSET = 500
#: A file name term alone is counted along the walk when its list holds more than FIRST_LENGTH
#: datasets and half the FIRST_PROBE first walked have it (a rare name pays the list's first
#: entries only), walking at most FIRST_WALK windows of datasets before its list is read.
FIRST_LENGTH, FIRST_PROBE, FIRST_WALK = 500, 100, 3


def stored_time(moment: datetime) -> str:
    """A UTC time as SQLite holds ``created_at``, so that text comparison orders it."""
    return moment.astimezone(UTC).replace(tzinfo=None).strftime(_STORED)


def _paged(
    passing: list[tuple[str, int]], after: tuple[datetime, int] | None, offset: int, limit: int
) -> Found:
    """A page of ``passing`` (``created_at`` as stored, id), newest first, from ``after``.

    The stored times are text of one width, so Python orders them as SQLite does.
    """
    ordered = sorted(passing, reverse=True)
    if after is not None:
        position = (stored_time(after[0]), after[1])
        ordered = [row for row in ordered if row < position]
    return Found([ident for _, ident in ordered[offset : offset + limit]], len(passing))


def dataset_page(
    session: Session,
    sql: Sql,
    route: Walk,
    conds: Sequence[Cond],
    after: tuple[datetime, int] | None,
    offset: int,
    limit: int,
) -> Found:
    """The ids of a page of datasets passing the route's checks and ``conds``, newest first."""
    seek = []
    if after is not None:
        seek = [f"(d.created_at, d.id) < ({sql.bind(stored_time(after[0]))}, {sql.bind(after[1])})"]
    if (mine := _owners_own(route, conds)) is not None:
        # One term is the whole search, and the owner's own list of it its whole answer: that
        # list alone is counted (not everyone's first: ``scan -op3``, 4.6 ms of 10.)
        count = list_size(session, sql, mine)
        # A words list (FTS5's, read in descending id without sorting) in id order where it
        # can be, but for the first page of a long list (page 1, or after a cursor), which the
        # walk finds as soon, reading a page over the term's share of the owner's datasets.
        if mine.cost == WORDS_COST and (offset or count <= search_sql.WINDOW):
            if (ids := _by_id(session, sql, mine, after, offset, limit)) is not None:
                return Found(ids, count)
        if count <= search_sql.WINDOW:
            passing = passing_rows(session, sql, route, [mine], mine, long=False, owned=True)
            return _paged(passing, after, offset, limit)
        return _walked(session, sql, route, conds, seek, offset, limit, count)
    if len(conds) == 1 and conds[0].cost == FILE_COST and conds[0].ids is not None:
        # A file name term alone whose list is not short, and that half the first datasets
        # walked have: counted along the walk, its list not to the window (``file:frame``, 5.5
        # ms of 13). The walk is capped: those may be the only datasets that have it.
        term = conds[0]
        cap = FIRST_WALK * (search_sql.WINDOW + 1)
        if (
            list_size(session, sql, term, FIRST_LENGTH) > FIRST_LENGTH
            and (walked := walk_count(session, sql, route, conds, term, FIRST_PROBE, cap))
            is not None
        ):
            return _walked(session, sql, route, conds, seek, offset, limit, walked)
    sizes = sorted(
        (
            (list_size(session, sql, cond), index, cond)
            for index, cond in enumerate(conds)
            if cond.ids
        ),
        key=lambda found: found[:2],
    )
    if len(sizes) > 1 and sizes[0][0] > search_sql.WINDOW:
        # When a quarter of the first list's datasets pass, counting along it soon passes the
        # window: the lists' lengths, which only choose the list to read whole, are not needed.
        along = counted_list(sizes[0][2], route)
        if along is None or not mostly_passing(session, sql, along, route, conds, sizes[0][2]):
            sizes = exact_sizes(session, sql, sizes)
    order = "ORDER BY d.created_at DESC, d.id DESC"
    page = f"LIMIT {int(limit)} OFFSET {int(offset)}"
    if sizes:
        driver = sizes[0][2]
        rest = search_sql.by_cost(c for c in conds if c is not driver)
        others = " AND ".join(["1", *route.checks, *rest])
        assert driver.ids is not None
        source = driven(driver.ids)
        count = 0
        # A user's list of values holds that user's datasets alone, every one that passes.
        whole = route.owner_check is not None and driver.owned_ids == driver.ids
        if (
            sizes[0][0] > search_sql.WINDOW
            and not (whole and len(sizes) > 1)  # then read once, below
            and (along := counted_list(driver, route))
        ):
            # Counted along the shortest list (the owner's own, with no check of the owner),
            # unsorted: it is read, not every dataset walked.
            count = count_passing(session, sql, along[0], route, conds, driver, owned=along[1])
        if count <= search_sql.WINDOW and (sizes[0][0] <= search_sql.WINDOW or len(sizes) > 1):
            # Few in the list, or terms that may match few together: the passing datasets are
            # read once and paged here, rather than the list read again to sort them.
            passing = passing_rows(
                session, sql, route, conds, driver, sizes[0][0] > search_sql.WINDOW, whole
            )
            if len(passing) <= search_sql.WINDOW:
                return _paged(passing, after, offset, limit)
            count = len(passing)
        elif count <= search_sql.WINDOW:
            # One long list: most likely more than the window pass, so they are counted in SQL
            # (no row reaches Python; along the walk when that is cheaper) and sorted only when
            # they turn out to be few.
            if not whole:  # (a user's whole list of values was counted above)
                along_walk = walk_count(session, sql, route, conds, driver)
                count = along_walk if along_walk is not None else \
                    count_passing(session, sql, driver.ids, route, conds, driver)  # fmt: skip
            if count <= search_sql.WINDOW:
                rows = sql.all(session, f"SELECT d.id FROM {source} WHERE "
                               f"{' AND '.join([others, *seek])} {order} {page}")  # fmt: skip
                return Found([row[0] for row in rows], count)
    return _walked(session, sql, route, conds, seek, offset, limit, count if sizes else None)


def _by_id(
    session: Session, sql: Sql, listed: Cond, after: tuple[datetime, int] | None, offset: int,
    limit: int,
) -> list[int] | None:  # fmt: skip
    """A page of ``listed``, the whole answer, read from its list in descending id where ids
    follow creation order (revision 0018): exact when every id read is at least ``ordered_from``
    (None otherwise). FTS5 seeks a page by number in its own list: page 400 of a word in a fifth
    of the datasets in 3 ms of SQL, where walking the newest 64,000 datasets took 36.

    Those datasets are newer than all the others and follow each other in id order, so the
    answer's newest are its largest ids. Past a cursor, they are the ids up to the newest dataset
    before it (whatever dataset the cursor names, if any).
    """
    recorded = sql.all(session, f"SELECT ordered_from, last_id FROM {ORDER_TABLE}")
    if not recorded or recorded[0][0] > recorded[0][1]:  # no dataset follows the order
        return None
    ordered_from = recorded[0][0]
    below = ""
    if after is not None:
        cursor = f"({sql.bind(stored_time(after[0]))}, {sql.bind(after[1])})"
        before = sql.all(session, (
            f"SELECT id FROM dataset WHERE (created_at, id) < {cursor} "
            "ORDER BY created_at DESC, id DESC LIMIT 1"
        ))  # fmt: skip
        if not before:
            return []
        if before[0][0] < ordered_from:  # those before the cursor are not the ids up to it
            return None
        below = f"WHERE id <= {sql.bind(before[0][0])}"
    assert listed.ids is not None
    rows = sql.all(session, (
        f"SELECT id FROM ({listed.ids}) AS listed {below} "
        f"ORDER BY id DESC LIMIT {int(limit)} OFFSET {int(offset)}"
    ))  # fmt: skip
    ids = [row[0] for row in rows]
    if any(ident < ordered_from for ident in ids):
        return None
    # A full-text row written by hand for no dataset (until ``db rebuild-search``): walked.
    shown = ", ".join(sql.bind(ident) for ident in ids)
    present = f"SELECT count(*) FROM dataset WHERE id IN ({shown})"
    if ids and sql.scalar(session, present) < len(ids):
        return None
    return ids


def _owners_own(route: Walk, conds: Sequence[Cond]) -> Cond | None:
    """The one term's list of the walk owner's datasets, when it alone is the whole search."""
    if len(conds) != 1 or route.owner_check is None or conds[0].owned_ids is None:
        return None
    if any(check != route.owner_check for check in route.checks):
        return None
    return replace(conds[0], ids=conds[0].owned_ids, lower_ids=conds[0].owned_lower)


def _walked(
    session: Session, sql: Sql, route: Walk, conds: Sequence[Cond], seek: list[str], offset: int,
    limit: int, count: int | None,
) -> Found:  # fmt: skip
    """A page found by walking the datasets newest first, ``count`` counted along the walk
    when it is None (no term has a list); a deep page by number looks its words up."""
    if offset >= DEEP_OFFSET and count is not None:
        deep = deep_page(session, sql, route, conds, seek, offset, limit)
        if deep is not None:
            return Found(deep, count)
    where = " AND ".join(["1", *route.checks, *search_sql.by_cost(conds)])
    walked = f"dataset AS d INDEXED BY {route.index}"
    if count is None:
        count = bounded_count(session, sql, f"SELECT 1 FROM {walked} WHERE {where}")
    order = f"ORDER BY d.created_at DESC, d.id DESC LIMIT {int(limit)} OFFSET {int(offset)}"
    where = " AND ".join([where, *seek])
    rows = sql.all(session, f"SELECT d.id FROM {walked} WHERE {where} {order}")
    return Found([row[0] for row in rows], count)
