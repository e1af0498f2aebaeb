"""Terms that each list more datasets than the window, at the window's real size: together
they match exactly 10,000 or 10,001 datasets, or fewer, and every page must be the one a plain
Python filter over the same rows gives (``total`` exact up to the window, ``has_more`` right).

These are the catalogs where SQLite counts the lists' lengths, probes whether most of a list's
first datasets pass, and counts a file name's datasets along the walk
(:mod:`dataflow_lite.store.sqlite_lists`); PostgreSQL answers the same pages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from dataflow_lite.store import search, search_sql, sqlite_lists

from .bare_catalog import bare_catalog

OWN, OTHERS = 20_002, 3_000  # user 1's datasets, then user 2's, interleaved in time
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def _values(number: int) -> dict[str, int]:
    """User 1's values: A on the first 15,000; with B 10,000 of them, with C 10,001, with D
    6,000 (D's list: 11,002); user 2's datasets have every value."""
    if number >= OWN:
        return {"A": 1, "B": 1, "C": 1, "D": 1}
    return {
        "A": int(number < 15_000),
        "B": int(number >= 5_000),
        "C": int(number >= 4_999),
        "D": int(number < 6_000 or number >= 15_000),
    }


def _rows() -> list[dict]:
    rows = []
    for number in range(OWN + OTHERS):
        # User 2's datasets fall between user 1's, so no walk sees one owner's alone.
        position = number * 7 if number < OWN else (number - OWN) * 47 + 3
        rows.append({
            "id": number + 1,
            "owner": 1 if number < OWN else 2,
            "moment": BASE + timedelta(seconds=position),
            "values": _values(number),
            "file": f"{'shot' if number % 20 < 9 else 'frame'}_{number:06d}.tif",
        })  # fmt: skip
    return rows


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def catalog(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """(engine, rows): the same catalog on each backend."""
    engine = bare_catalog(tmp_path_factory, request, "search-dense")
    rows = _rows()
    with engine.begin() as connection:
        stamp = "%Y-%m-%d %H:%M:%S.%f"
        connection.execute(
            text("INSERT INTO dataset (id, name, creator_id, endpoint_id, folder, created_at) "
                 "VALUES (:id, :name, :owner, 'e', :folder, :moment)"),
            [{"id": r["id"], "name": f"alpha {r['id']}", "owner": r["owner"],
              "folder": f"f{r['id']}", "moment": r["moment"].strftime(stamp)} for r in rows],
        )  # fmt: skip
        connection.execute(
            text("INSERT INTO metadatavalue (dataset_id, field_name, value) VALUES (:id, :k, :v)"),
            [{"id": r["id"], "k": k, "v": str(v)} for r in rows for k, v in r["values"].items()],
        )
        connection.execute(
            text("INSERT INTO datasetfile (dataset_id, name, relative_path, is_directory, "
                 "created_at) VALUES (:id, :name, '', :no, :moment)"),
            [{"id": r["id"], "name": r["file"], "no": False, "moment": r["moment"].strftime(stamp)}
             for r in rows],
        )  # fmt: skip
        search.insert_text(connection, [(r["id"], _body(r), r["owner"]) for r in rows])
    yield engine, rows
    engine.dispose()


def _body(row: dict) -> str:
    """The dataset's full-text row, as ``search.text_body`` lays it out."""
    return search.text_body(f"alpha {row['id']}", row["values"].items(), [row["file"]])


def _passes(row: dict, q: str) -> bool:
    for term in q.split():
        if term == "alpha":
            continue
        if term.startswith("file:"):
            if term[5:] not in row["file"]:
                return False
        elif ">" in term:
            key, bound = term.split(">")
            if not row["values"][key] > int(bound):
                return False
        else:
            key, value = term.split(":")
            if row["values"][key] != int(value):
                return False
    return True


@pytest.mark.parametrize("first_lengths", [4, 1])  # 1: no list ends within the first count
@pytest.mark.parametrize("owner", [1, 2, None])  # 2: fewer than the window, any term
@pytest.mark.parametrize(
    "q",
    [
        "A>0 B>0",  # 10,000 together
        "A>0 C>0",  # 10,001 together
        "alpha A>0 B>0",
        "alpha A>0 C>0",
        "alpha A>0 D>0",  # most of alpha's first datasets pass, 6,000 in all
        "alpha D>0 A>0",
        "A>0 B>0 file:frame",
        "alpha A>0 C>0 file:frame",
        "file:frame",  # 55% of the datasets: counted along the walk
        "file:frame B:0",
        "file:shot",  # 45% of the datasets, 10,351 in all: counted along its list
        "alpha B>0 C>0 D>0 file:frame",
    ],
)
def test_dense_terms_count_exactly_to_the_window(catalog, monkeypatch, q, owner, first_lengths):
    engine, rows = catalog
    monkeypatch.setattr(sqlite_lists, "FIRST_LENGTHS", first_lengths)
    expected = [r for r in rows if (owner is None or r["owner"] == owner) and _passes(r, q)]
    expected.sort(key=lambda r: (r["moment"], r["id"]), reverse=True)
    with Session(engine) as session:
        page = search.search_datasets(session, owner, q, 1, 20)
        assert [d.id for d in page.results] == [r["id"] for r in expected[:20]], q
        assert page.total == min(len(expected), search_sql.WINDOW), q
        assert page.total_exact == (len(expected) <= search_sql.WINDOW), q
        assert page.has_more == (len(expected) > 20)
        if page.next:
            after = search.search_datasets(session, owner, q, 1, 20, page.next)
            assert [d.id for d in after.results] == [r["id"] for r in expected[20:40]], q
