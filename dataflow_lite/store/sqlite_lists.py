"""How SQLite reads a term's list of datasets: counting it, checking its candidates, and
looking a walk's words up in it (:mod:`sqlite_search` decides which list drives a page).

A candidate's checks cost more than a list's entries: a dataset row looked up, a value's seek,
a call into Python with the row's text. So the owner is checked in its narrow index, values
in the covering (key, dataset, value) index, and no dataset row is read when no check needs
one; the owner's own words list (revision 0012) stands for both the owner and the words.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from dataflow_lite.store import search_sql
from dataflow_lite.store.search_sql import Cond, Sql, Walk, bounded_count

# What a row's check costs, relatively (measured at a million datasets): a seek of one value,
# a call into Python with the row's text, a LIKE over every file name of the dataset.
VALUE_COST, WORDS_COST, FILE_COST = 1, 2, 3
_LIST_PER_ROW = 40


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
    checking its datasets, so the shortest is worth finding first.
    """
    counted: list[tuple[int, int, Cond]] = []
    shortest: int | None = None
    for _, index, cond in sizes:
        assert cond.ids is not None
        size = (
            bounded_count(session, sql, cond.ids, shortest)
            if shortest
            else sql.scalar(session, f"SELECT count(*) FROM ({cond.ids}) AS listed")
        )
        counted.append((size, index, cond))
        shortest = size if shortest is None else min(shortest, size)
    return sorted(counted, key=lambda found: found[:2])


def as_list(session: Session, sql: Sql, cond: Cond, depth: int) -> Cond:
    """``cond`` for a walk ``depth`` datasets deep: the words' list looked up (SQLite builds it
    once as an index) instead of each row's text read and matched, when that costs less.

    A row's words cost about 40 times one entry of the list, and at least ``depth`` rows are
    walked: a list of at most 40 x ``depth`` entries is then never dearer.
    """
    if cond.cost != WORDS_COST or cond.ids is None:
        return cond
    # The owner's own list, when the walk is an owner's: half as long for a user of half.
    ids = cond.owned_ids or cond.ids
    if bounded_count(session, sql, ids, _LIST_PER_ROW * depth) > _LIST_PER_ROW * depth:
        return cond
    return Cond(f"d.id IN ({ids})", cond.ids, cond.lower_ids, cost=VALUE_COST)


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
    mine = next((c for c in others if c.owned_ids), None)
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
    session: Session, sql: Sql, route: Walk, conds: Sequence[Cond], driver: Cond, long: bool
) -> list[tuple[str, int]]:
    """(``created_at``, id) of up to WINDOW + 1 datasets of the driver's list that pass: read
    by id when the checks allow, then only the passing datasets' rows are read."""
    assert driver.ids is not None
    listed, where, by_id = list_source(driver.ids, route, conds, driver, False, long)
    when = "(SELECT x.created_at FROM dataset AS x WHERE x.id = d.id)" if by_id else "d.created_at"
    rows = sql.all(
        session, f"SELECT {when}, d.id FROM {listed} WHERE {where} LIMIT {search_sql.WINDOW + 1}"
    )
    return [(row[0], row[1]) for row in rows]
