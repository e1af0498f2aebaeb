"""What both search backends (:mod:`sqlite_search`, :mod:`pg_search`) build SQL with.

Bound parameters (:class:`Sql`), a term's condition on a dataset (:class:`Cond`), the route of a
walk (:class:`Walk`), a found page (:class:`Found`), the window within which counts are exact,
and the counting and ``LIKE`` helpers: plain SQL that means the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

#: ``total`` is exact up to this many results; deeper pages need the ``after`` cursor.
WINDOW = 10_000
#: File substrings shorter than this cannot use trigrams: they are matched by scanning.
TRIGRAM = 3


@dataclass
class Cond:
    """One condition on a dataset ``d``: a check of one row and, maybe, a list of ids."""

    check: str
    #: SQL listing the ids of the datasets that pass (column ``id``), when the term can.
    ids: str | None = None
    #: SQL listing some of them, cheaper to count (a lower bound), when there is one.
    lower_ids: str | None = None
    #: How dear ``check`` is on one row (0: a column; more: subqueries, a function call), so
    #: that a row failing a cheap check is never given the dear ones (:func:`by_cost`).
    cost: int = 0
    #: SQL listing the walk owner's datasets that pass (all of them), and some of them
    #: (a lower bound, as ``lower_ids``): counted or looked up without checking each owner.
    owned_ids: str | None = None
    owned_lower: str | None = None
    #: ``check`` reads a column of ``d`` other than ``id`` (so ``d`` must be the dataset row).
    reads_row: bool = False
    #: The list (the walk owner's, if any) read along its table rather than through an index,
    #: from ``{rows}`` (``LIMIT n``: the first n rows only): cheaper when most rows are in it.
    scanned_ids: str | None = None


@dataclass
class Sql:
    """Bound parameters, named as they are added: no value is ever spliced into SQL."""

    params: dict[str, Any] = field(default_factory=dict)

    def bind(self, value: Any) -> str:
        """A placeholder for ``value``."""
        name = f"p{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def all(self, session: Session, sql: str) -> list[Any]:
        """Every row of ``sql`` with the parameters bound."""
        return list(session.execute(text(sql), self.params).all())

    def scalar(self, session: Session, sql: str) -> int:
        """The one integer ``sql`` answers."""
        return int(session.execute(text(sql), self.params).scalar_one())


@dataclass
class Walk:
    """How datasets are walked newest first when no term lists few enough of them."""

    #: The index to walk (SQLite's ``INDEXED BY``; PostgreSQL's planner picks its own).
    index: str
    checks: list[str]
    #: The one of ``checks`` that keeps the owner's datasets, if any.
    owner_check: str | None = None
    #: The same check for a list's ``d.id`` alone (no dataset row read), if the backend has one.
    owner_seek: str | None = None


@dataclass
class Found:
    """Ids of one page, newest first, and how many match (at most WINDOW + 1)."""

    ids: list[int]
    count: int


def by_cost(conds: Iterable[Cond]) -> list[str]:
    """The checks of ``conds``, cheapest first (SQL evaluates ``AND`` from the left)."""
    return [cond.check for cond in sorted(conds, key=lambda cond: cond.cost)]


def owner_text(creator_id: int) -> str:
    """What a full-text row's ``owner`` column holds: the creator's id (revision 0012).

    A dataset never changes owner, so the rows written when it changes and by the bulk import
    stay right; words are only ever matched in ``body``, so no search can name this column.
    """
    return str(creator_id)


def same_row(owner: str, tokens: Iterable[str], wanted: Iterable[str], creator_id: int) -> bool:
    """Whether a stored full-text row's ``owner`` and ``tokens`` are the creator's and the
    ``wanted`` tokens, in any order (a file added later appends its names)."""
    return owner == owner_text(creator_id) and sorted(tokens) == sorted(wanted)


def like_pattern(substring: str) -> str:
    """A LIKE pattern matching names that contain ``substring`` (``%``, ``_``, ``\\`` escaped)."""
    escaped = substring.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def bounded_count(session: Session, sql: Sql, ids: str, bound: int | None = None) -> int:
    """How many rows ``ids`` lists, counting no further than ``bound`` + 1 (WINDOW + 1)."""
    limit = WINDOW if bound is None else bound
    return sql.scalar(session, f"SELECT count(*) FROM ({ids} LIMIT {limit + 1}) AS listed")


def list_size(session: Session, sql: Sql, cond: Cond, bound: int | None = None) -> int:
    """How many datasets a condition lists, up to ``bound`` + 1 (WINDOW + 1): its lower bound
    first, which alone may already pass the bound."""
    limit = WINDOW if bound is None else bound
    if cond.lower_ids is not None:
        if (low := bounded_count(session, sql, cond.lower_ids, limit)) > limit:
            return low
    assert cond.ids is not None
    return bounded_count(session, sql, cond.ids, limit)
