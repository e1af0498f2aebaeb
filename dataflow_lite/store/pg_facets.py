"""Facets on PostgreSQL: the top values of fields among the datasets a search matches, and keys.

The same answers as :mod:`sqlite_facets`, whose rules this follows where SQLite's types show:
a metadata number and a boolean (1 or 0 to SQLite) group by numeric value, text by its bytes,
dates (``created``, and text that starts with ``YYYY-MM-DD``) by month, arrays and objects by
their compact JSON. Ties are broken by value in SQLite's order (null, numbers, text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from dataflow_lite.store import pg_pages, search_sql
from dataflow_lite.store.search_sql import Cond, Sql, Walk
from dataflow_lite.store.sqlite_facets import Bucket, Key, named_buckets

__all__ = ["Bucket", "Key", "field_buckets", "keys", "matching_ids"]

_VALUE = "(m.value::jsonb)"
_SCALAR = f"({_VALUE} #>> '{{}}')"
#: The type SQLite's ``json_type`` names for a value (``m.value``, JSON text).
KIND = (
    "CASE coalesce(jsonb_typeof({v}::jsonb), 'null') WHEN 'number' THEN "
    "CASE WHEN {v} ~ '^\\s*-?[0-9]+\\s*$' THEN 'integer' ELSE 'real' END "
    "WHEN 'string' THEN 'text' WHEN 'boolean' THEN {v}::jsonb #>> '{{}}' "
    "ELSE coalesce(jsonb_typeof({v}::jsonb), 'null') END"
)
_RANK = (
    f"CASE coalesce(jsonb_typeof({_VALUE}), 'null') WHEN 'null' THEN 0 "
    "WHEN 'number' THEN 1 WHEN 'boolean' THEN 1 ELSE 2 END"
)
_NUMERIC = (
    f"CASE jsonb_typeof({_VALUE}) WHEN 'number' THEN {_SCALAR}::numeric "
    f"WHEN 'boolean' THEN CASE WHEN {_SCALAR} = 'true' THEN 1 ELSE 0 END END"
)
_WORDS = (
    f"CASE jsonb_typeof({_VALUE}) WHEN 'string' THEN CASE WHEN {_SCALAR} ~ "
    f"'^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}' THEN substr({_SCALAR}, 1, 7) ELSE {_SCALAR} END "
    "WHEN 'array' THEN m.value WHEN 'object' THEN m.value END COLLATE \"C\""
)


def matching_ids(session: Session, sql: Sql, route: Walk, conds: Sequence[Cond]) -> list[int]:
    """Ids of the datasets matching, at most WINDOW + 1 of them, in no particular order.

    The list a page would read drives (:mod:`pg_pages`); with none, the datasets are read and
    checked.
    """
    conds = pg_pages.listing(session, sql, route, conds)
    listed = [cond for cond in conds if cond.ids is not None]
    if listed:
        driver = pg_pages.driving_list(session, sql, route, conds)
        found = pg_pages.passing_sql(route, conds, driver)
    else:
        where = " AND ".join(["TRUE", *route.checks, *search_sql.by_cost(conds)])
        found = f"SELECT d.id FROM dataset AS d WHERE {where}"
    rows = sql.all(session, f"SELECT id FROM ({found}) AS f LIMIT {search_sql.WINDOW + 1}")
    return [row[0] for row in rows]


def _among(sql: Sql, ids: Sequence[int]) -> str:
    # ``= ANY`` of the sorted ids: one index descent each. Joined with ``unnest`` instead, the
    # planner merged them with a scan of the whole index (125 ms for 10,000 ids spread over a
    # million datasets, where the lookups take 10). Bound as the array's text: psycopg dumps a
    # list of 10,000 ints in 9 ms of Python.
    listed = "{" + ",".join(str(int(ident)) for ident in sorted(ids)) + "}"
    return f"= ANY(CAST({sql.bind(listed)} AS bigint[]))"


def _number(value: Decimal, kind: str) -> Any:
    if kind in ("true", "false"):
        return bool(value)
    return int(value) if kind == "integer" else float(value)


def _shown(rank: int, number: Decimal | None, words: str | None, kind: str) -> Any:
    if rank == 0:
        return None
    if number is not None:
        return _number(number, kind)
    if kind in ("array", "object") and words is not None:
        return json.dumps(json.loads(words), separators=(",", ":"), ensure_ascii=False)
    return words


def field_buckets(session: Session, ids: Sequence[int], field: str, top: int) -> list[Bucket]:
    """The ``top`` commonest values of ``field`` among ``ids`` (a built-in or a metadata key)."""
    sql = Sql()
    among = _among(sql, ids)
    joined = f"(SELECT * FROM dataset WHERE id {among}) AS d"
    limit = f"LIMIT {int(top)}"
    if field == "created":
        rows = sql.all(session, (
            "SELECT to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM') COLLATE \"C\", count(*) "
            f"FROM {joined} GROUP BY 1 ORDER BY count(*) DESC, 1 {limit}"
        ))  # fmt: skip
        return [Bucket(value, count) for value, count in rows]
    if field in ("instrument", "creator"):
        return named_buckets(session, sql, field, joined, top)
    rows = sql.all(session, (
        f"SELECT {_RANK}, {_NUMERIC}, {_WORDS}, count(*), min({KIND.format(v='m.value')}) "
        f"FROM metadatavalue AS m WHERE m.field_name = {sql.bind(field)} "
        f"AND m.dataset_id {among} GROUP BY 1, 2, 3 "
        f"ORDER BY 4 DESC, 1, 2, 3 {limit}"
    ))  # fmt: skip
    return [
        Bucket(_shown(rank, number, words, kind), count)
        for rank, number, words, count, kind in rows
    ]


def keys(session: Session, owner_id: int | None) -> list[Key]:
    """Every key on ``owner_id``'s datasets (None: everyone's), commonest first."""
    sql = Sql()
    where = "" if owner_id is None else f"WHERE creator_id = {sql.bind(owner_id)}"
    rows = sql.all(session, (
        "SELECT field_name, sum(datasets), string_agg(DISTINCT value_type, ',') FROM metadatakey "
        f"{where} GROUP BY field_name HAVING sum(datasets) > 0 "
        'ORDER BY 2 DESC, field_name COLLATE "C"'
    ))  # fmt: skip
    return [Key(name, int(count), sorted(kinds.split(","))) for name, count, kinds in rows]
