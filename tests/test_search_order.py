"""SQLite records from which dataset on ids follow creation order (revision 0018), and a user's
search of one words term reads its pages from the term's list in descending id from there: the
pages must be the walk's, newest first, wherever the order breaks and whatever a cursor names."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlmodel import Session

from dataflow_lite.store import db, schema, search, sqlite_pages
from dataflow_lite.store.models import Dataset

from .bare_catalog import bare_catalog

pytestmark = pytest.mark.sqlite

START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite"])
def engine(tmp_path_factory, request):
    engine = bare_catalog(tmp_path_factory, request, "search-order")
    yield engine
    engine.dispose()


@pytest.fixture
def read_by_id(monkeypatch) -> list[bool]:
    """Whether each page of a one-word search came from the list in id order (an empty page,
    past the last dataset, aside: it is exact whatever the order)."""
    answered: list[bool] = []
    by_id = sqlite_pages._by_id

    def spied(*args, **kwargs):
        page = by_id(*args, **kwargs)
        if page != []:
            answered.append(page is not None)
        return page

    monkeypatch.setattr(sqlite_pages, "_by_id", spied)
    return answered


def add(engine, ident: int, minute: int, name: str = "run", owner: int = 1) -> None:
    with Session(engine) as session:
        when = START + timedelta(minutes=minute)
        session.add(Dataset(id=ident, name=name, creator_id=owner, endpoint_id="e",
                            folder=f"f{ident}", created_at=when))  # fmt: skip
        session.flush()
        search.reindex(session, ident)
        session.commit()


def order(engine) -> tuple[int, int]:
    """``ordered_from`` and the largest id recorded."""
    with db.reading(engine).connect() as connection:
        row = connection.execute(text("SELECT ordered_from, last_id FROM dataset_order")).one()
    return row[0], row[1]


def newest_first(engine, word: str, owner: int = 1) -> list[int]:
    with db.reading(engine).connect() as connection:
        rows = connection.execute(text(
            "SELECT d.id FROM dataset AS d JOIN dataset_text AS t ON t.rowid = d.id "
            "WHERE d.creator_id = :owner AND ' ' || t.body || ' ' LIKE :word "
            "ORDER BY d.created_at DESC, d.id DESC"
        ), {"owner": owner, "word": f"% {word} %"}).scalars().all()  # fmt: skip
    return list(rows)


def test_the_order_holds_until_a_dataset_is_older_or_numbered_before_another(engine):
    assert order(engine) == (0, 0)
    for ident in (1, 2, 3):
        add(engine, ident, ident)
    add(engine, 4, 3)  # the same time as the one before is in order: ties go by id
    assert order(engine) == (0, 4)
    add(engine, 5, 0)  # older than those before it
    assert order(engine) == (6, 5)
    add(engine, 6, 9)
    add(engine, 8, 10)
    assert order(engine) == (6, 8)
    add(engine, 7, 11)  # newer, but numbered before one already there
    assert order(engine) == (9, 8)
    add(engine, 9, 12)
    with engine.begin() as connection:
        connection.execute(text("UPDATE dataset SET name = 'renamed' WHERE id = 9"))
    assert order(engine) == (9, 9)  # a change of anything else keeps it
    with engine.begin() as connection:
        connection.execute(text("UPDATE dataset SET created_at = '2030-01-01' WHERE id = 9"))
    assert order(engine) == (10, 9)
    add(engine, 10, 13)  # before the time 9 was given: still older than one before it
    assert order(engine) == (11, 10)
    add(engine, 11, 60 * 24 * 365 * 7)
    with engine.begin() as connection:  # the newest deleted: an id given again is the largest
        connection.execute(text("DELETE FROM dataset WHERE id = 11"))
    add(engine, 11, 60 * 24 * 365 * 7)
    assert order(engine) == (11, 11)
    with engine.begin() as connection:  # renumbered by its rowid
        connection.execute(text("UPDATE dataset SET rowid = 20 WHERE id = 1"))
    assert order(engine) == (21, 20)


@pytest.mark.parametrize(
    "minutes",
    [
        list(range(30)),  # in order throughout
        [*range(10), 5, *range(20, 40)],  # the 11th older than some before it: ordered from 12
        [40 - m for m in range(30)],  # each older than the one before: never ordered
    ],
    ids=["in order", "broken once", "reversed"],
)
def test_pages_by_number_and_by_cursor_are_the_walks(engine, read_by_id, minutes):
    for ident, minute in enumerate(minutes, start=1):
        add(engine, ident, minute, "run alpha" if ident % 3 else "run", owner=1 + ident % 5 // 4)
    ordered_from, _ = order(engine)
    for word in ("run", "alpha"):
        expected = newest_first(engine, word)
        with Session(db.reading(engine)) as session:
            for per_page in (1, 4, 7):
                pages = [
                    [d.id for d in search.search_datasets(session, 1, word, n, per_page).results]
                    for n in range(1, len(expected) // per_page + 3)
                ]
                assert sum(pages, []) == expected, (word, per_page)
                shown, cursor = [], None
                while True:
                    page = search.search_datasets(session, 1, word, 1, per_page, cursor)
                    shown += [d.id for d in page.results]
                    if not page.next:
                        break
                    cursor = page.next
                assert shown == expected
    if ordered_from <= 1:
        assert all(read_by_id)
    elif ordered_from > len(minutes):
        assert not any(read_by_id)
    else:
        assert True in read_by_id and False in read_by_id


def cursor_for(when: datetime, ident: int) -> str:
    """A cursor as ``search.cursor`` writes them, naming any time and any id."""
    return f"{int(when.timestamp() * 1_000_000)}.{ident}"


def test_a_cursor_naming_a_time_and_an_id_of_different_datasets_is_the_walks(engine, read_by_id):
    for ident in range(1, 13):
        add(engine, ident, 2 * ident)
    expected = newest_first(engine, "run")
    with Session(db.reading(engine)) as session:
        for minute in range(0, 27):
            for ident in (1, 6, 12, 99):
                when = START + timedelta(minutes=minute)
                page = search.search_datasets(session, 1, "run", 1, 3, cursor_for(when, ident))
                older = [i for i in expected if (2 * i, i) < (minute, ident)]
                assert [d.id for d in page.results] == older[:3], (minute, ident)
    assert all(read_by_id)


def test_a_dataset_deleted_by_hand_takes_its_text_and_a_stray_row_is_walked_past(
    engine, read_by_id
):
    for ident in range(1, 7):
        add(engine, ident, ident)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM dataset WHERE id IN (4, 6)"))
    with Session(db.reading(engine)) as session:
        pages = [search.search_datasets(session, 1, "run", n, 2).results for n in (1, 2, 3)]
    assert [[d.id for d in page] for page in pages] == [[5, 3], [2, 1], []]
    assert read_by_id == [True, True]
    read_by_id.clear()
    with Session(engine) as session:  # a full-text row written by hand for no dataset
        search.insert_text(session, [(9, "run", 1)])
        session.commit()
    with Session(db.reading(engine)) as session:
        page = search.search_datasets(session, 1, "run", 1, 2)
    assert [d.id for d in page.results] == [5, 3] and read_by_id == [False]


def test_a_dataset_given_another_creator_by_hand_gives_its_text_that_owner(engine):
    for ident in range(1, 5):
        add(engine, ident, ident)
    with engine.begin() as connection:
        connection.execute(text("UPDATE dataset SET creator_id = 2 WHERE id IN (2, 4)"))
    with Session(db.reading(engine)) as session:
        for owner, owned in ((1, [3, 1]), (2, [4, 2])):
            page = search.search_datasets(session, owner, "run", 1, 10)
            assert ([d.id for d in page.results], page.total) == (owned, 2)
            facets = search.facet_datasets(session, owner, "run", ["creator"], 10)
            assert facets.total == 2
            assert [(b["id"], b["count"]) for b in facets.facets["creator"]] == [(owner, 2)]


def test_an_upgrade_records_the_order_of_the_datasets_already_there(tmp_path):
    database = tmp_path / "catalog.sqlite3"
    engine = db.make_engine(database, 5000)
    with engine.begin() as connection:
        command.upgrade(schema.alembic_config(connection), "0017_sqlite_word_prefixes")
    engine.dispose()
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute(
            "INSERT INTO user (id, username, name, is_admin, is_active, created_at, "
            "session_generation) VALUES (1, 'u', '', 0, 1, '2020', 0)"
        )
        connection.execute("INSERT INTO endpoint (id, name, adapter, options, is_default, "
                           "created_at) VALUES ('e', 'l', 'local', '{}', 1, '2020')")  # fmt: skip
        for ident, minute in enumerate([1, 3, 1, 2, 5, 6], start=1):
            connection.execute(
                "INSERT INTO dataset (id, name, creator_id, endpoint_id, folder, created_at) "
                "VALUES (?, 'run', 1, 'e', ?, ?)",
                (ident, f"f{ident}", f"2024-01-01 00:0{minute}:00.000000"),
            )
    schema.upgrade(database)
    with closing(sqlite3.connect(database)) as connection:
        state = connection.execute("SELECT * FROM dataset_order").fetchall()
    # The 4th is newer than the 3rd but older than the 2nd.
    assert state == [(5, "2024-01-01 00:06:00.000000", 6)]


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_an_import_in_one_go_records_the_order_as_its_rows_go_in(cli, instance, tmp_path):
    made = ["2021-03-04T05:06:07Z", "2021-03-04T05:06:08Z", "2021-03-04T05:06:07Z",
            "2021-03-05T00:00:00Z", "2021-03-06T00:00:00Z"]  # fmt: skip
    lines = [
        {"name": f"scan {n}", "creator": "ada", "created_at": when, "metadata": {}, "files": []}
        for n, when in enumerate(made)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cli.user_key("ada")
    cli("import", str(source))
    with closing(sqlite3.connect(instance / "dataflow.sqlite3")) as connection:
        state = connection.execute("SELECT ordered_from, last_id FROM dataset_order").fetchall()
        ids = [i for (i,) in connection.execute("SELECT id FROM dataset ORDER BY id")]
    assert state == [(ids[2] + 1, ids[-1])]  # the third is older than the second
