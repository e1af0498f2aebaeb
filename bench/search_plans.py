"""The query plans of search: each statement a search runs, with ``EXPLAIN (ANALYZE, BUFFERS)``.

Points at the folder a `bench/search.py --keep` run left (starting its PostgreSQL cluster again,
if it has one) and asks, in-process as one user, the query classes of `bench/search.py`; every
statement that :mod:`dataflow_lite.store.search_sql` runs is shown with its plan and its time,
so that a scan where an index should answer shows. On SQLite the plan is ``EXPLAIN QUERY PLAN``.

    .venv/bin/python bench/search_plans.py FOLDER [--user alice] [--q 'op3'] [--facets]
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository
from search import point_at  # noqa: E402

from dataflow_lite.settings import load_settings  # noqa: E402
from dataflow_lite.store import search, search_sql  # noqa: E402
from dataflow_lite.store.db import Database, make_engine  # noqa: E402
from dataflow_lite.store.models import User  # noqa: E402
from tests.postgres import cluster  # noqa: E402

QUERIES = [
    "op3", "scan", "2016-12-15", "", "Sample-Temperature>300", "Count:10..19", "Sample-Id:S-16",
    "created:2016-12-12..2016-12-15", "op3 Sample-Temperature>300", "file:00012",
]  # fmt: skip


def explained(session: Session, sql: str, params: dict[str, Any]) -> None:
    """Print the plan of one statement, run for real."""
    dialect = session.get_bind().dialect.name
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if dialect == "postgresql" else "EXPLAIN QUERY PLAN "
    print("\n--", " ".join(sql.split())[:400])
    for row in session.execute(text(prefix + sql), params).all():
        print("  ", " | ".join(str(part) for part in row))


def main() -> None:
    """Show the plans of the query classes (or of ``--q``) for one user."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="what a bench/search.py --keep run left")
    parser.add_argument("--user", default="alice")
    parser.add_argument("--q", action="append", help="a query (default: the bench's classes)")
    parser.add_argument("--facets", action="store_true", help="facets rather than pages")
    args = parser.parse_args()
    instance = args.folder / "instance"
    with ExitStack() as stack:
        if (args.folder / "postgresql").exists():
            point_at(instance, stack.enter_context(cluster(keep=args.folder / "postgresql")))
        settings = load_settings(instance)
        engine = make_engine(Database.from_setting(instance, settings["database"]), 5000)
        ask(engine, args.user, args.q or QUERIES, args.facets)


def ask(engine: Engine, user: str, queries: list[str], facets: bool) -> None:
    """Run each query as ``user``, showing the plan of every statement it runs."""
    real_all, real_scalar = search_sql.Sql.all, search_sql.Sql.scalar

    def all_rows(self: search_sql.Sql, session: Session, sql: str) -> list[Any]:
        explained(session, sql, self.params)
        return real_all(self, session, sql)

    def scalar(self: search_sql.Sql, session: Session, sql: str) -> int:
        explained(session, sql, self.params)
        return real_scalar(self, session, sql)

    search_sql.Sql.all, search_sql.Sql.scalar = all_rows, scalar  # type: ignore[method-assign]
    with Session(engine) as session:
        owner = session.exec(select(User.id).where(User.username == user)).one()
        for query in queries:
            print(f"\n==== q={query!r}")
            if facets:
                search.facet_datasets(session, owner, query, ["Sample-Id", "created"], 10)
            else:
                page = search.search_datasets(session, owner, query, 1, 20)
                print(f"==== total {page.total} (exact: {page.total_exact})")


if __name__ == "__main__":
    main()
