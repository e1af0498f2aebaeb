"""``dataflow-lite db rebuild-search``: every dataset's full-text row written again from the
catalog, on either database, whatever happened to the rows."""

from __future__ import annotations

import tomllib

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlmodel import select

from dataflow_lite.cli import main
from dataflow_lite.services import searches
from dataflow_lite.store import search, sqlite_words
from dataflow_lite.store.models import AuditEvent
from tests.conftest import catalog as open_catalog
from tests.test_search import catalog, ids

__all__ = ["catalog"]  # the fixture, imported for pytest


FTS5 = ("dataset_text", "file_name_text")


def text_rows(instance) -> dict[int, tuple]:
    """Every full-text row by dataset id: its words (in any order: a file added through the API
    appends its folder's name after its own, the catalog lists the folder after the file) and
    its other columns as they are."""
    with open_catalog(instance) as session:
        columns = search.text_columns(session.get_bind().dialect.name)
        rows = session.execute(sa.text(f"SELECT {', '.join(columns)} FROM dataset_text")).all()
    return {ident: (sorted(sqlite_words.tokens(body)), *rest) for ident, body, *rest in rows}


def test_rebuild_restores_lost_altered_and_stray_rows_and_is_audited(
    client, auth, catalog, cli, instance
):
    assert "of 5 dataset(s) with the catalog: wrote 0, dropped 0" in rebuild(instance)
    written, filenode = text_rows(instance), table_file(instance)
    hot, cold = catalog["hot"], catalog["cold"]
    assert sorted(written) == sorted(catalog[k] for k in ("hot", "cold", "text", "bare", "eve"))
    assert ids(client, auth, "Bruker") == [cold] and ids(client, auth, "ghost") == []
    with open_catalog(instance) as session:
        session.execute(sa.text("DELETE FROM dataset_text WHERE rowid IN (:a, :b)"),
                        {"a": hot, "b": cold})  # fmt: skip
        search.insert_text(session, [(cold, "ghost", 1), (hot + 1000, "ghost stray", 1)])
    assert ids(client, auth, "Bruker") == [] and ids(client, auth, "ghost") == [cold]
    assert ids(client, auth, "Asylum") == []

    said = rebuild(instance)
    assert "of 5 dataset(s) with the catalog: wrote 2, dropped 1" in said

    assert text_rows(instance) == written
    if filenode is not None:  # PostgreSQL wrote the table anew, without the rows' old versions
        assert table_file(instance) != filenode
    assert ids(client, auth, "Bruker") == [cold] and ids(client, auth, "ghost") == []
    assert ids(client, auth, "Asylum") == [hot]
    with open_catalog(instance) as session:
        sqlite = session.get_bind().dialect.name == "sqlite"
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "search.rebuild"))
        summaries = [(event.object_type, event.object_id, event.summary) for event in events]
    indexed = [("index", table, {"indexed": table}) for table in FTS5 if sqlite]
    changed = {"datasets": 5, "written": 2, "dropped": 1, "ids": sorted([hot, cold, hot + 1000])}
    assert summaries == [*indexed, *indexed, ("dataset_text", None, changed)]
    cli("audit", "verify")  # the chain holds (it exits 1 otherwise)
    assert "wrote 0, dropped 0" in rebuild(instance)  # nothing left to change


@pytest.mark.parametrize("instance", ["postgresql"], indirect=True)
def test_rebuild_mends_postgresql_tokens_that_disagree_with_their_text(
    client, auth, catalog, instance
):
    odd = catalog["text"]
    assert ids(client, auth, "odd") == [odd]
    with open_catalog(instance) as session:
        session.execute(sa.text("UPDATE dataset_text SET tokens = '#1' WHERE rowid = :id"),
                        {"id": odd})  # fmt: skip
    assert ids(client, auth, "odd") == []
    assert "wrote 1, dropped 0" in rebuild(instance)
    assert ids(client, auth, "odd") == [odd]


def test_rebuild_goes_through_every_dataset_in_chunks_and_drops_strays_anywhere(
    client, auth, catalog, instance, monkeypatch
):
    monkeypatch.setattr(searches, "REBUILD_IDS", 2)
    written = text_rows(instance)
    with open_catalog(instance) as session:
        session.execute(sa.text("DELETE FROM dataset_text"))
        strays = [(-(2**63), "stray lowest", 1), (0, "stray low", 1), (2**63 - 1, "stray", 1)]
        search.insert_text(session, strays)
    assert "of 5 dataset(s) with the catalog: wrote 5, dropped 3" in rebuild(instance)
    assert text_rows(instance) == written
    with open_catalog(instance) as session:
        events = session.exec(
            select(AuditEvent).where(
                AuditEvent.object_type == "dataset_text", AuditEvent.action == "search.rebuild"
            )
        )
        chunks = [event.summary["datasets"] for event in events]  # fmt: skip
    assert chunks == [2, 2, 1]
    assert ids(client, auth, "stray") == []


def test_rebuild_of_an_empty_catalog_changes_nothing(instance):
    assert "of 0 dataset(s) with the catalog: wrote 0, dropped 0" in rebuild(instance)


def table_file(instance) -> int | None:
    """The file that holds ``dataset_text`` on PostgreSQL (None on SQLite)."""
    with open_catalog(instance) as session:
        if session.get_bind().dialect.name != "postgresql":
            return None
        return session.execute(sa.text("SELECT pg_relation_filenode('dataset_text')")).scalar()


def rebuild(instance) -> str:
    """Run ``db rebuild-search``; what it said on stderr."""
    done = CliRunner().invoke(main, ["--instance", str(instance), "db", "rebuild-search"])
    assert done.exit_code == 0, done.output
    return done.stderr


def integrity_problem(instance, table: str) -> str | None:
    """What FTS5's own check finds wrong with ``table``'s index against its rows, if anything."""
    with open_catalog(instance) as session:
        try:
            session.execute(sa.text(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')"))
        except sa.exc.DatabaseError as error:
            return str(error.orig)
    return None


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_rebuild_mends_fts5_indexes_that_disagree_with_their_rows(client, auth, catalog, instance):
    """What a tokenizer change leaves (an index made from other tokens than the rows' text
    gives now), made here by changing the rows' text behind FTS5's back, and a file name
    taken out of the trigram index (whose check cannot compare it with ``datasetfile``)."""
    hot = catalog["hot"]
    with open_catalog(instance) as session:
        session.execute(sa.text("UPDATE dataset_text_content SET c0 = 'zzz' WHERE id = :id"),
                        {"id": hot})  # fmt: skip
        session.execute(sa.text(
            "INSERT INTO file_name_text (file_name_text, rowid, name) "
            "SELECT 'delete', id, name FROM datasetfile WHERE dataset_id = :id"
        ), {"id": hot})  # fmt: skip
    assert "malformed" in integrity_problem(instance, "dataset_text")
    assert ids(client, auth, "file:AFM_Topography") == []

    rebuild(instance)

    assert integrity_problem(instance, "dataset_text") is None
    assert ids(client, auth, "zzz") == [] and ids(client, auth, "Asylum") == [hot]
    assert ids(client, auth, "file:AFM_Topography") == [hot]


@pytest.mark.parametrize("instance", ["postgresql"], indirect=True)
def test_a_compaction_kept_waiting_says_the_rows_are_written_and_what_to_run(
    client, auth, catalog, instance
):
    written = text_rows(instance)
    with (instance / "config.toml").open("a") as config:
        config.write("busy_timeout_ms = 300\n")
    with open_catalog(instance) as session:
        session.execute(sa.text("DELETE FROM dataset_text"))
    # A search's lock on the table, held (a plain connection: the catalog's own take the
    # writers' lock as they begin).
    url = tomllib.loads((instance / "config.toml").read_text())["database"]
    reader = sa.create_engine(url)
    try:
        with reader.connect() as search_running:
            search_running.execute(sa.text("SELECT count(*) FROM dataset_text")).scalar()
            done = CliRunner().invoke(main, ["--instance", str(instance), "db", "rebuild-search"])
    finally:
        reader.dispose()
    assert done.exit_code == 1
    assert "the rows were rewritten (5 written, 0 dropped)" in done.output
    assert "run VACUUM (FULL, ANALYZE) dataset_text" in done.output
    assert text_rows(instance) == written
