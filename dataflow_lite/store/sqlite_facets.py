"""Facets on SQLite: the top values of fields among the datasets a search matches, and keys.

The matching datasets are listed once (at most :data:`search_sql.WINDOW` of them, along the
shortest list the terms give or, when every list is long, the first walked; no sort), passed
back in ascending order as one JSON array (``json_each``) and grouped per field. Dates
(``created``, and metadata text that starts with ``YYYY-MM-DD``) are counted by month. Keys
come from ``metadatakey``, which triggers keep (revision 0006).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from dataflow_lite.store import search_sql
from dataflow_lite.store.search_sql import Cond, Sql, Walk

_MONTH = "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'"


@dataclass
class Bucket:
    """One value of a field and how many of the matching datasets have it."""

    value: Any
    count: int
    #: The instrument's or user's id, for those fields.
    id: int | None = None


def matching_ids(session: Session, sql: Sql, route: Walk, conds: Sequence[Cond]) -> list[int]:
    """Ids of the datasets matching, at most WINDOW + 1 of them, in ascending order (each
    field's count then seeks its rows in the order they lie, not all over the catalog)."""
    return sorted(_matching(session, sql, route, conds))


def _matching(session: Session, sql: Sql, route: Walk, conds: Sequence[Cond]) -> list[int]:
    limit = search_sql.WINDOW + 1
    listed = [cond for cond in conds if cond.ids is not None]
    sizes = sorted(((search_sql.list_size(session, sql, c), i) for i, c in enumerate(listed)))
    walk = f"dataset AS d INDEXED BY {route.index}"
    if not listed or (sizes[0][0] > search_sql.WINDOW and all(c.cost <= 1 for c in conds)):
        # Nothing lists the matches, or every list is long and each row's checks are seeks:
        # the datasets are walked in the index's order (the oldest first: any WINDOW + 1 will
        # do), so the fields' values are found side by side rather than one page of the
        # catalog each.
        where = " AND ".join(["1", *route.checks, *search_sql.by_cost(conds)])
        return [row[0] for row in sql.all(session, f"SELECT d.id FROM {walk} WHERE {where} "
                                                   f"LIMIT {limit}")]  # fmt: skip
    driver = listed[sizes[0][1]]
    where = " AND ".join(
        ["1", *route.checks, *search_sql.by_cost(c for c in conds if c is not driver)]
    )
    # Any WINDOW + 1 matches will do: the whole words' list (FTS5 need not merge every token a
    # prefix begins) is read first, and the full list only when it holds too few.
    for ids in (driver.lower_ids, driver.ids):
        if ids is None:
            continue
        source = f"({ids}) AS s CROSS JOIN dataset AS d ON d.id = s.id"
        found = [
            row[0]
            for row in sql.all(session, f"SELECT d.id FROM {source} WHERE {where} LIMIT {limit}")
        ]
        if len(found) == limit or ids is driver.ids:
            return found
    raise AssertionError("a listed condition has ids")


def _ids(sql: Sql, ids: Sequence[int]) -> str:
    return f"(SELECT value AS id FROM json_each({sql.bind(json.dumps(list(ids)))})) AS ids"


def named_buckets(session: Session, sql: Sql, field: str, joined: str, top: int) -> list[Bucket]:
    """The instrument or creator facet of the datasets ``joined`` (as ``d``), on either backend
    (datasets without an instrument sort first, as SQLite sorts NULL)."""
    tail = f"GROUP BY 1 ORDER BY count(*) DESC, 1 NULLS FIRST LIMIT {int(top)}"
    if field == "instrument":
        rows = sql.all(session, (
            "SELECT d.instrument_id, count(*), min(i.name) FROM "
            f"{joined} LEFT JOIN instrument AS i ON i.id = d.instrument_id {tail}"
        ))  # fmt: skip
        return [Bucket(name or "Untitled instrument", count, ident or 0)
                for ident, count, name in rows]  # fmt: skip
    rows = sql.all(session, (
        f"SELECT d.creator_id, count(*), min(u.username) FROM {joined} "
        f'JOIN "user" AS u ON u.id = d.creator_id {tail}'
    ))  # fmt: skip
    return [Bucket(name, count, ident) for ident, count, name in rows]


def field_buckets(session: Session, ids: Sequence[int], field: str, top: int) -> list[Bucket]:
    """The ``top`` commonest values of ``field`` among ``ids`` (a built-in or a metadata key)."""
    sql = Sql()
    source = _ids(sql, ids)
    joined = f"{source} CROSS JOIN dataset AS d ON d.id = ids.id"
    tail = f"GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT {int(top)}"
    if field == "created":
        rows = sql.all(session, f"SELECT substr(d.created_at, 1, 7), count(*) FROM {joined} {tail}")
        return [Bucket(value, count) for value, count in rows]
    if field in ("instrument", "creator"):
        return named_buckets(session, sql, field, joined, top)
    value = (
        "CASE WHEN json_type(v) = 'text' AND json_extract(v, '$') GLOB "
        f"{_MONTH} THEN substr(json_extract(v, '$'), 1, 7) "
        "WHEN json_type(v) IN ('array', 'object') THEN json(v) "
        "ELSE json_extract(v, '$') END"
    )
    # Each dataset's value is found by one seek of (key, dataset), and the stored JSON texts are
    # grouped first: the JSON functions then run once per distinct text, not once per dataset.
    rows = sql.all(session, (
        f"SELECT {value}, sum(n), json_type(v) FROM (SELECT m.value AS v, count(*) AS n "
        f"FROM {source} CROSS JOIN metadatavalue AS m INDEXED BY ix_metadatavalue_key_value "
        f"ON m.field_name = {sql.bind(field)} AND m.dataset_id = ids.id GROUP BY m.value) "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(top)}"
    ))  # fmt: skip
    return [
        Bucket(bool(value) if kind in ("true", "false") else value, count)
        for value, count, kind in rows
    ]


@dataclass
class Key:
    """A flattened metadata key in use: on how many datasets, with values of which types."""

    key: str
    datasets: int
    types: list[str]


def keys(session: Session, owner_id: int | None) -> list[Key]:
    """Every key on ``owner_id``'s datasets (None: everyone's), commonest first."""
    sql = Sql()
    where = "" if owner_id is None else f"WHERE creator_id = {sql.bind(owner_id)}"
    rows = sql.all(session, (
        "SELECT field_name, sum(datasets), group_concat(DISTINCT value_type) FROM metadatakey "
        f"{where} GROUP BY field_name HAVING sum(datasets) > 0 ORDER BY 2 DESC, 1"
    ))  # fmt: skip
    return [Key(name, count, sorted(kinds.split(","))) for name, count, kinds in rows]
