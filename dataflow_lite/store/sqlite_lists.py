"""How SQLite reads a term's list of datasets: counting it, checking its candidates, and
looking a walk's words up in it (:mod:`sqlite_pages` decides which list drives a page).

A candidate's checks cost more than a list's entries: a dataset row looked up, a value's seek,
a call into Python with the row's text. So the owner is checked in its narrow index, values
in the covering (key, dataset, value) index, and no dataset row is read when no check needs
one; the owner's own words list (revision 0012) stands for both the owner and the words, as
the owner's own typed values (0014) stand for the owner and the value.
A file name's list costs more per entry than checking a dataset's names: when most datasets
have the name, they are counted along the walk instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from dataflow_lite.store import search_sql
from dataflow_lite.store.search_sql import Cond, Sql, Walk, bounded_count

# What a row's check costs, relatively (measured at a million datasets): a seek of one value,
# a call into Python with the row's text, a LIKE over every file name of the dataset.
VALUE_COST, WORDS_COST, FILE_COST = 1, 2, 3
#: A deep page by number first takes this many times its depth of the walk's newest datasets.
DEEP_TAKEN = 8
#: How many candidates of a long list are checked to see how many of them pass.
PROBE = 500
#: Long lists are first counted to this many windows, so that a short one ends the others early.
FIRST_LENGTHS = 4


def driven(ids: str) -> str:
    # CROSS JOIN keeps the list outside: its rows are looked up by id, not scanned.
    return f"({ids}) AS s CROSS JOIN dataset AS d ON d.id = s.id"


def exact_sizes(
    session: Session, sql: Sql, sizes: list[tuple[int, int, Cond]]
) -> list[tuple[int, int, Cond]]:
    """Every list of ``sizes`` (all longer than the window) counted to its end, or to the
    shortest length counted before it: the shortest is then the one to read whole.

    Terms that each match many datasets may match few together, and then one list is read to
    its end; counting a list (an index or FTS5 alone, no dataset row) costs a small part of
    checking its datasets, so the shortest is worth finding first. Each list is first counted
    to :data:`FIRST_LENGTHS` windows only, so a list read to its end is one no longer than another
    (four dense terms: 30,000 entries of ``Count:10..12`` first ended, not 200,000 of
    ``op3``). A file name's list (a trigram match, a file row and a distinct dataset per
    entry) costs several times an index entry: it is left uncounted, and last, when a cheaper
    list was counted.
    """
    listed = [found for found in sizes if found[2].cost < FILE_COST] or sizes
    shortest: int | None = None
    counted: list[tuple[int, int, Cond]] = []
    for bound in (FIRST_LENGTHS * search_sql.WINDOW, None):
        counted = []
        for _, index, cond in listed:
            limit = min((n for n in (bound, shortest) if n is not None), default=None)
            size = _length(session, sql, cond, limit)
            counted.append((size, index, cond))
            if limit is None or size <= limit:  # the list ended: its exact length
                shortest = size if shortest is None else min(shortest, size)
        if shortest is not None:
            break
    last, chosen = max(size for size, _, _ in counted) + 1, {index for _, index, _ in listed}
    uncounted = [(last, index, cond) for _, index, cond in sizes if index not in chosen]
    return sorted([*counted, *uncounted], key=lambda found: found[:2])


def _length(session: Session, sql: Sql, cond: Cond, limit: int | None) -> int:
    """How many datasets ``cond`` lists, counting no further than ``limit`` + 1 (None: all).

    A words list past the limit by its whole words alone is not counted again with prefixes
    (FTS5 merges every token a prefix begins before the first entry: 3.5 ms for ``op3*``).
    """
    if limit is None:
        assert cond.ids is not None
        return sql.scalar(session, f"SELECT count(*) FROM ({cond.ids}) AS listed")
    return search_sql.list_size(session, sql, cond, limit)


def counted_list(driver: Cond, route: Walk) -> tuple[str, bool] | None:
    """The list a long driver is counted along, and whether it holds the owner's datasets
    alone: the owner's own words, or the driver's lower bound (None: it has neither)."""
    owned = driver.owned_lower or driver.owned_ids
    if owned and route.owner_check:
        return owned, True
    if driver.lower_ids is not None:
        return driver.lower_ids, False
    return None


def mostly_passing(
    session: Session, sql: Sql, along: tuple[str, bool], route: Walk, conds: Sequence[Cond],
    driver: Cond,
) -> bool:  # fmt: skip
    """Whether at least a quarter of the first :data:`PROBE` datasets of a long list pass: then
    counting along it likely reaches the window within four windows' checks, and the lists
    need no exact sizes (``op3 Sample-Temperature>300``, half passing: 400,000 entries not
    counted). Any list gives the same answer: the lengths only choose the one to read."""
    ids, owned = along
    listed, where, _ = list_source(f"{ids} LIMIT {PROBE}", route, conds, driver, owned, False)
    passed = sql.scalar(session, f"SELECT count(*) FROM {listed} WHERE {where}")
    return 4 * passed >= PROBE


def deep_page(
    session: Session, sql: Sql, route: Walk, conds: Sequence[Cond], seek: Sequence[str],
    offset: int, limit: int,
) -> list[int] | None:  # fmt: skip
    """The ids of a page by number ``offset`` datasets deep along the walk, when a words term
    has a list (None otherwise): the walk's newest datasets are taken, and their words looked
    up in the part of the list at or past their smallest id, not each row's text read.

    A row's text costs about 7 µs, and a page 8,000 matches deep walks 40,000 rows; the words'
    list from that id on is built once (FTS5 seeks the row id) and each row is a lookup in it:
    page 400 of a word in a fifth of the datasets in 36 ms instead of 62. Exact for the rows
    taken, whatever order ids were given in; when too few of them pass, four times as many are
    taken, until the walk ends.
    """
    words = [c for c in conds if c.cost == WORDS_COST and c.ids is not None]
    if not words:
        return None
    rest = [c for c in conds if c not in words]
    newest = " AND ".join(["1", *route.checks, *seek])
    reads_row = any(c.reads_row for c in rest)
    taken = DEEP_TAKEN * (offset + limit)
    while True:
        walked = (
            f"SELECT d.id, d.created_at FROM dataset AS d INDEXED BY {route.index} WHERE "
            f"{newest} ORDER BY d.created_at DESC, d.id DESC LIMIT {taken}"
        )
        # The owner's own list when the walk is the owner's: half as long for a user of half.
        # The walk's rows are read only when a check needs more of a dataset than its id.
        at = "w" if reads_row else "d"
        listed = [
            f"{at}.id IN (SELECT id FROM ({c.owned_ids or c.ids}) AS listed "
            "WHERE id >= (SELECT min(id) FROM w))"
            for c in words
        ]
        source = "w CROSS JOIN dataset AS d ON d.id = w.id" if reads_row else "w AS d"
        where = " AND ".join([*listed, *search_sql.by_cost(rest)])
        rows = sql.all(session, (
            f"WITH w AS MATERIALIZED ({walked}) SELECT {at}.id FROM {source} WHERE {where} "
            f"ORDER BY {at}.created_at DESC, {at}.id DESC LIMIT {int(limit)} OFFSET {int(offset)}"
        ))  # fmt: skip
        if len(rows) == limit or sql.scalar(session, f"SELECT count(*) FROM ({walked})") < taken:
            return [row[0] for row in rows]
        taken *= 4


def list_source(
    ids: str, route: Walk, conds: Sequence[Cond], driver: Cond, owned: bool, long: bool
) -> tuple[str, str, bool]:
    """FROM and WHERE reading the datasets ``ids`` lists that pass the route and every cond but
    ``driver`` (whose list it is; ``owned``: the list holds the owner's alone; ``long``: it
    holds more than the window), and whether ``d`` is the list itself (no dataset row read).

    When no check reads a dataset's row (only its id: values, words, files, the owner in its
    narrow index), no row is looked up per candidate.
    """
    others = [c for c in conds if c is not driver]
    # Only words: a value's seek in the index costs less than building the value's list.
    mine = next((c for c in others if c.owned_ids and c.cost == WORDS_COST), None)
    if mine is not None and mine.owned_ids and route.owner_check and long:
        # A long list's candidates are looked up in the owner's words (SQLite builds that list
        # once, 100,000 ids in 17 ms) instead of their owner and their text checked one by one
        # (30,000 candidates of four dense terms: 31 ms instead of 108).
        others = [c for c in others if c is not mine]
        others.append(Cond(f"d.id IN ({mine.owned_ids})", cost=VALUE_COST))
        owned = True
    checks = [c for c in route.checks if not (owned and c == route.owner_check)]
    rest = search_sql.by_cost(others)
    # By id when the only route check left is the owner's, which its narrow index answers, and
    # the list is long (a short one's rows cost no more: 1,000 of them 2.3 ms, by id 3.5).
    alone = all(c == route.owner_check for c in checks) and route.owner_seek is not None
    by_id = long and alone and not any(c.reads_row for c in conds)
    if by_id and checks and route.owner_seek is not None:
        checks = [route.owner_seek]
    listed = f"({ids}) AS d" if by_id else driven(ids)
    return listed, " AND ".join(["1", *checks, *rest]), by_id


def count_passing(
    session: Session, sql: Sql, ids: str, route: Walk, conds: Sequence[Cond], driver: Cond,
    owned: bool = False,
) -> int:  # fmt: skip
    """How many datasets of ``ids`` pass (:func:`list_source`), up to WINDOW + 1."""
    listed, where, _ = list_source(ids, route, conds, driver, owned, long=True)
    return bounded_count(session, sql, f"SELECT 1 FROM {listed} WHERE {where}")


def passing_rows(
    session: Session, sql: Sql, route: Walk, conds: Sequence[Cond], driver: Cond, long: bool,
    owned: bool,
) -> list[tuple[str, int]]:  # fmt: skip
    """(``created_at``, id) of up to WINDOW + 1 datasets of the driver's list that pass: read
    by id when the checks allow, then only the passing datasets' rows are read."""
    assert driver.ids is not None
    listed, where, by_id = list_source(driver.ids, route, conds, driver, owned, long)
    when = "(SELECT x.created_at FROM dataset AS x WHERE x.id = d.id)" if by_id else "d.created_at"
    rows = sql.all(
        session, f"SELECT {when}, d.id FROM {listed} WHERE {where} LIMIT {search_sql.WINDOW + 1}"
    )
    return [(row[0], row[1]) for row in rows]


def walk_count(
    session: Session, sql: Sql, route: Walk, conds: Sequence[Cond], driver: Cond,
    probe: int = PROBE, cap: int | None = None,
) -> int | None:  # fmt: skip
    """How many datasets pass, up to WINDOW + 1, counted along the walk's index rather than
    along the file name list ``driver`` when half of the first ``probe`` datasets walked
    pass (None otherwise, and for any other list). With ``cap``, no more than that many
    datasets are walked: None when they hold too few passing to tell the count.

    Each entry of a file name list costs a trigram match and a file row, each dataset a
    distinct id and the owner's check; walking checks each dataset's names once (``file:frame``,
    a name in every dataset: 10,001 datasets walked in 7 ms, against 20,000 candidates of the
    list, 60,000 files, in 18).
    """
    if driver.cost < FILE_COST:
        return None
    checked = " AND ".join(["1", *search_sql.by_cost(conds)])
    walked = f"dataset AS d INDEXED BY {route.index} WHERE {' AND '.join(['1', *route.checks])}"
    first = f"SELECT d.id AS id FROM {walked}"
    probed = driven(first + f" LIMIT {probe}")
    passed = sql.scalar(session, f"SELECT count(*) FROM {probed} WHERE {checked}")
    if 2 * passed < probe:
        return None
    if cap is None:
        return bounded_count(session, sql, f"SELECT 1 FROM {walked} AND {checked}")
    # Each dataset's checks as a column of the first ``cap`` walked: its row is read once.
    taken = f"SELECT ({checked}) AS ok FROM {walked}"
    count = bounded_count(session, sql, f"SELECT 1 FROM ({taken} LIMIT {int(cap)}) WHERE ok")
    if count > search_sql.WINDOW or bounded_count(session, sql, first, cap) < cap:
        return count  # past the window, or the walk ended before the cap: every one counted
    return None
