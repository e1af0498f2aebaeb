"""``dataflow-lite import``: a JSONL catalog export recorded through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from slugify import slugify
from sqlmodel import select

from dataflow_lite.cli import main
from dataflow_lite.services import import_lines, imports
from dataflow_lite.store import layout, metadata, sqlite_load
from dataflow_lite.store.models import AuditEvent, Dataset, DatasetFile, MetadataValue

from .conftest import Cli, catalog

SHA = hashlib.sha256(b"x").hexdigest()


@pytest.fixture(autouse=True, params=["checked here", "checked in processes"])
def checking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test twice: lines checked in the importing process (a small file), and in checking
    processes (a large file), two lines to a batch so that lines cross batches."""
    if request.param == "checked in processes":
        monkeypatch.setattr(imports, "PARALLEL_BYTES", 0)
        monkeypatch.setattr(import_lines, "BATCH", 2)


def line(name: str = "AFM scan", **changes) -> dict:
    item = {
        "name": name,
        "creator": "ada",
        "created_at": "2021-03-04T05:06:07Z",
        "metadata": {"Sample": {"Id": "S-1", "Temperature": 300.5}, "Count": 3, "Tags": ["a"]},
        "files": [
            {"relative_path": "", "name": "scan.ibw", "size": 10, "sha256": SHA},
            {"relative_path": "raw/day1", "name": "a.txt", "size": 0, "sha256": SHA.upper()},
        ],
    }
    item.update(changes)
    return item


def write(path: Path, *items: dict | str) -> Path:
    path.write_text(
        "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)
    )
    return path


def test_a_file_is_recorded_with_metadata_files_folders_and_search(
    cli, instance, tmp_path, auth, client
):
    cli.user_key("ada")
    source = write(tmp_path / "in.jsonl", line(), line("Second scan", instrument=None))
    cli("import", str(source))
    with catalog(instance) as session:
        rows = session.exec(select(Dataset).order_by(Dataset.id)).all()
        assert [row.name for row in rows] == ["AFM scan", "Second scan"]
        first = rows[0]
        assert first.created_at.strftime("%Y-%m-%dT%H:%M:%S") == "2021-03-04T05:06:07"
        assert first.folder == "untitled_instrument/2021-03-04/050607_afm_scan"
        values = session.exec(
            select(MetadataValue).where(MetadataValue.dataset_id == first.id)
        ).all()
        assert [(v.field_name, v.value) for v in values] == [
            ("Sample-Id", "S-1"), ("Sample-Temperature", 300.5), ("Count", 3), ("Tags", ["a"])
        ]  # fmt: skip
        # The second dataset's rows too: rows wait in a temporary file between the passes, and
        # each must come back as it was written, whatever came before it.
        for dataset in rows:
            files = session.exec(
                select(DatasetFile)
                .where(DatasetFile.dataset_id == dataset.id)
                .order_by(DatasetFile.id)
            ).all()
            assert [(f.relative_path, f.name, f.is_directory, f.sha256) for f in files] == [
                ("", "scan.ibw", False, SHA),
                ("raw/day1", "a.txt", False, SHA),  # hex digits kept in lower case
                ("", "raw", True, None),
                ("raw", "day1", True, None),
            ]
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "dataset.import"))
        (event,) = events.all()
        assert event.summary["datasets"] == 2 and event.summary["source"] == "in.jsonl"
    # An administrator's search finds them by metadata value and by file name, as it would an
    # uploaded dataset's.
    admin = {"Authorization": f"Bearer {cli.user_key('root', admin=True)}"}
    for word, expected in (("S-1", 2), ("scan.ibw", 2), ("Second", 1)):
        found = client.get(f"/api/v1/datasets/search?q={word}", headers=admin).get_json()
        assert found["total"] == expected, word
    shown = client.get(f"/api/v1/datasets/{first.id}", headers=admin).get_json()
    assert shown["creator"]["name"] == "Ada"
    # Datasets made afterwards number on from the imported ones.
    after = client.post("/api/v1/datasets", json={"name": "after"}, headers=admin)
    assert (after.status_code, after.get_json()["id"]) == (201, rows[-1].id + 1)


def test_bad_lines_are_named_and_nothing_is_written(cli, instance, tmp_path):
    cli.user_key("ada")
    cli("instrument", "add", "Cypher")
    source = write(
        tmp_path / "in.jsonl",
        line(),
        "{not json",
        line(creator="nobody"),
        line(instrument="Nonexistent"),
        line(created_at="yesterday"),
        line(files=[{"relative_path": "../up", "name": "x", "size": 1, "sha256": SHA}]),
        line(files=[{"name": "metadata.json", "size": 1, "sha256": SHA}]),
        line(files=[{"name": "x", "size": -1, "sha256": SHA}]),
        line(files=[{"name": "x", "size": 1, "sha256": "abc"}]),
        line(metadata={"A": [{"deep": 1}]}),
        line(name=" "),
        line(colour="red"),
        "[1, 2]",
        line(metadata={"x": float("nan")}),
        json.dumps(line()).replace("300.5", "1e999"),
        '{"name": "x", "metadata": {"Count": ' + "1" * 5000 + "}}",
        "[" * 100_000,
    )
    said = cli.fails("import", str(source))
    assert "16 bad line(s), nothing was imported" in said
    for number, words in (
        (2, "not JSON"),
        (3, "no user 'nobody'"),
        (4, "no instrument 'Nonexistent'"),
        (5, "not an ISO 8601 time"),
        (6, ".."),
        (7, "metadata.json"),
        (8, "size must be"),
        (9, "sha256 must be"),
        (10, "metadata"),
        (11, "name must not be blank"),
        (12, "unknown key 'colour'"),
        (13, "must be a JSON object"),
        (14, "NaN is not a JSON value"),
        (15, "the number 1e999 is too large"),
        (16, "not JSON: Exceeds the limit"),
        (17, "not JSON: maximum recursion depth"),
    ):
        assert f"line {number}: " in said and words in said, (number, said)
    assert "Traceback" not in said and len(said.strip().splitlines()) == 1
    with catalog(instance) as session:
        assert session.exec(select(Dataset)).all() == []
        assert (
            session.exec(select(AuditEvent).where(AuditEvent.action == "dataset.import")).all()
            == []
        )


def test_skip_bad_imports_the_rest_and_names_what_it_left_out(cli, instance, tmp_path):
    cli.user_key("ada")
    source = write(tmp_path / "in.jsonl", line("one"), line(creator="nobody"), "", line("three"))
    run = CliRunner().invoke(
        main, ["--instance", str(instance), "import", str(source), "--skip-bad"]
    )
    assert run.exit_code == 0, run.output
    assert "skipped line 2: no user 'nobody'" in run.stderr
    assert "imported 2 of 3 dataset(s)" in run.stderr
    with catalog(instance) as session:
        assert [row.name for row in session.exec(select(Dataset))] == ["one", "three"]


def test_duplicates_in_the_file_and_in_the_catalog_are_bad_lines(cli, instance, tmp_path):
    cli.user_key("ada")
    cli("import", str(write(tmp_path / "a.jsonl", line())))
    again = write(tmp_path / "b.jsonl", line("new"), line(), line("new"))
    said = cli.fails("import", str(again))
    assert "line 2: the same dataset as dataset 1" in said
    assert "line 3: the same dataset as line 1" in said
    # The same name at another time is another dataset: its folder gets a suffix, never the same.
    cli(
        "import",
        str(
            write(
                tmp_path / "c.jsonl",
                line(
                    metadata={"Other": 1},
                    created_at="2021-03-04T05:06:07.5+00:00",
                    name="AFM scan!",
                ),
            )
        ),
    )
    with catalog(instance) as session:
        folders = [row.folder for row in session.exec(select(Dataset).order_by(Dataset.id))]
    assert folders == [
        "untitled_instrument/2021-03-04/050607_afm_scan",
        "untitled_instrument/2021-03-04/050607_afm_scan-2",
    ]


def test_folders_stay_unique_across_transactions(cli, instance, tmp_path, monkeypatch):
    # Two datasets to a transaction: the later ones must see the folders the earlier ones took.
    monkeypatch.setattr(imports, "CHUNK", 2)
    cli.user_key("ada")
    names = ["AFM scan", "AFM  scan", "AFM scan!", "afm scan", "AFM_scan"]  # one slug
    cli("import", str(write(tmp_path / "in.jsonl", *(line(name) for name in names))))
    with catalog(instance) as session:
        rows = session.exec(select(Dataset).order_by(Dataset.id)).all()
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == "dataset.import").order_by(AuditEvent.id)
        ).all()
    folder = "untitled_instrument/2021-03-04/050607_afm_scan"
    assert [(row.id, row.folder) for row in rows] == [
        (1, folder),
        *((n, f"{folder}-{n}") for n in range(2, 6)),
    ]
    assert [event.summary["lines"] for event in events] == ["1-2", "3-4", "5-5"]
    assert [event.object_id for event in events] == ["1-2", "3-4", "5-5"]


def test_instruments_by_name_or_id_are_checked_against_their_form(cli, instance, tmp_path):
    cli.user_key("ada")
    instrument = cli.json("instrument", "add", "Cypher")
    cli("instrument", "field", "Cypher", "Stage-Temperature", "--type", "number", "--required")
    good = line(instrument="Cypher", metadata={"Stage": {"Temperature": 300}})
    by_id = line("by id", instrument=instrument["id"], metadata={"Stage": {"Temperature": 1.5}})
    wrong = line("wrong", instrument="Cypher", metadata={"Stage": {"Temperature": "hot"}})
    missing = line("missing", instrument=str(instrument["id"]), metadata={})
    said = cli.fails("import", str(write(tmp_path / "in.jsonl", good, by_id, wrong, missing)))
    assert "line 3: metadata: Stage-Temperature: must be a number" in said
    assert "line 4: metadata: Stage-Temperature: is required" in said
    cli("import", str(write(tmp_path / "ok.jsonl", good, by_id)))
    with catalog(instance) as session:
        rows = session.exec(select(Dataset).order_by(Dataset.id)).all()
        assert {row.instrument_id for row in rows} == {instrument["id"]}
        assert rows[0].folder.startswith("cypher/2021-03-04/")
        value = session.exec(
            select(MetadataValue).where(MetadataValue.dataset_id == rows[0].id)
        ).one()
        assert value.metadata_field_id is not None


def test_an_unknown_endpoint_and_a_large_value_are_refused_in_one_line(cli, tmp_path):
    cli.user_key("ada")
    source = write(tmp_path / "in.jsonl", line())
    assert "no endpoint named 'elsewhere'" in cli.fails(
        "import", str(source), "--endpoint", "elsewhere"
    )
    huge = write(tmp_path / "huge.jsonl", line(metadata={"Notes": "x" * 70_000}))
    assert "larger than this server's limit" in cli.fails("import", str(huge))


def test_nested_metadata_flattens_as_ordflow_does_and_nests_back():
    nested = {"Microscope": {"Vendor": "Asylum", "Stage": {"T": 3}}, "Tags": [1, 2], "Empty": {}}
    flat = metadata.flatten(nested)
    assert flat == [("Microscope-Vendor", "Asylum"), ("Microscope-Stage-T", 3), ("Tags", [1, 2])]
    assert metadata.flatten(metadata.nest(flat)) == flat


def test_the_quick_slug_is_python_slugify():
    chooser = random.Random(10)
    alphabet = "aZ09 -_.!?&',;:/\\\t\n()äé\u00a0ßx"
    for _ in range(20_000):
        text = "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 100)))
        expected = slugify(text, separator="_", max_length=layout.MAX_SLUG_LENGTH) or "untitled"
        assert layout.slug(text) == expected, text


def killed(batch: list) -> list:
    """A checking process's work that ends it, as the kernel's out-of-memory killer would (a
    function of the module: the pool sends its name to the process)."""
    os.kill(os.getpid(), signal.SIGKILL)
    return []


def test_a_checking_process_killed_stops_the_import_in_one_line(
    cli, instance, tmp_path, monkeypatch
):
    monkeypatch.setattr(imports, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(import_lines, "BATCH", 1)

    monkeypatch.setattr(import_lines, "_check_batch", killed)
    cli.user_key("ada")
    said = cli.fails("import", str(write(tmp_path / "in.jsonl", line(), line("Second scan"))))
    assert "Error: a process checking the lines stopped" in said
    with catalog(instance) as session:
        assert session.exec(select(Dataset)).all() == []


#: What a load leaves in a SQLite catalog, the endpoint's id (an instance's own) left out, and
#: the indexes and triggers (a table's own statement lists its foreign keys in any order).
LOADED = {
    "dataset": "id, name, creator_id, instrument_id, folder, created_at FROM dataset",
    "metadatavalue": "id, dataset_id, field_name, value, metadata_field_id, owner_id "
    "FROM metadatavalue",
    "datasetfile": "id, dataset_id, name, relative_path, is_directory, file_length, sha256 "
    "FROM datasetfile",
    "metadatakey": "creator_id, field_name, value_type, datasets FROM metadatakey",
    "dataset_text": "rowid, body, owner FROM dataset_text",
    "schema": "type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')",
    "file names with 'can'": "rowid, 0 FROM file_name_text WHERE name MATCH 'can'",
    "dataset_order": "ordered_from, newest_at, last_id FROM dataset_order",
}


def loaded(instance: Path) -> dict[str, list]:
    with catalog(instance) as session:
        tables = {
            name: session.execute(sa.text(f"SELECT {query} ORDER BY 1, 2")).all()
            for name, query in LOADED.items()
        }
        for fts in ("dataset_text", "file_name_text"):  # raises when the index is not its rows'
            session.execute(sa.text(f"INSERT INTO {fts} ({fts}) VALUES ('integrity-check')"))
    return tables


def mixed_lines(count: int) -> list[dict]:
    return [
        line(
            f"scan {n}",
            creator=("ada", "bob")[n % 2],
            metadata={
                "Sample": {"Id": f"S-{n}", "Temperature": n * 1.5},
                "Count": n % 4,
                "Tags": ["a"] if n % 3 else None,
                f"Only{n % 2}": "x",
            },
            files=[{"relative_path": f"raw/{n}", "name": f"scan{n}.ibw", "size": n, "sha256": SHA}],
        )  # fmt: skip
        for n in range(count)
    ]


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_an_empty_catalog_loads_in_one_go_and_ends_as_one_loaded_chunk_by_chunk(
    cli, instance, tmp_path, monkeypatch
):
    monkeypatch.setattr(imports, "CHUNK", 3)
    used = []
    monkeypatch.setattr(imports.sqlite_load, "indexes_after", spy(used, sqlite_load.indexes_after))
    source = write(tmp_path / "in.jsonl", *mixed_lines(8))
    other = Cli(tmp_path / "other")
    for each in (cli, other):
        each("init")
        each.user_key("ada")
        each.user_key("bob")
    cli("import", str(source))
    assert len(used) == 1
    monkeypatch.setattr(imports, "_no_dataset", lambda session: False)
    other("import", str(source))
    assert len(used) == 1

    in_one_go, chunk_by_chunk = loaded(instance), loaded(other.instance)
    assert len(in_one_go["dataset"]) == 8 and len(in_one_go["file names with 'can'"]) == 8
    keys = {(key, datasets) for _, key, _, datasets in in_one_go["metadatakey"]}
    assert {("Only1", 4), ("Only0", 4), ("Sample-Id", 4)} <= keys
    assert in_one_go == chunk_by_chunk


def spy(calls: list, function):
    def called(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)

    return called


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("bad", "said"),
    [
        # The last statement of the load fails, after every row and index is in.
        ([], "Error: the catalog cannot be used: no such table: nowhere"),
        # Bad lines after two chunks loaded: refused (and rolled back) before the indexes.
        (
            ["{bad", line("last", creator="x")],
            "2 bad line(s), nothing was imported (--skip-bad imports the rest): line 9, 10;",
        ),
    ],
)
def test_a_load_in_one_go_that_fails_or_meets_a_bad_line_leaves_the_catalog_as_it_was(
    cli, instance, tmp_path, monkeypatch, bad, said
):
    cli.user_key("ada")
    cli.user_key("bob")
    before = loaded(instance)
    monkeypatch.setattr(imports, "CHUNK", 3)
    failing = dict(sqlite_load.TRIGGERS_IN_BULK, dataset_owner_insert=("SELECT * FROM nowhere",))
    monkeypatch.setattr(sqlite_load, "TRIGGERS_IN_BULK", failing)
    assert said in cli.fails("import", str(write(tmp_path / "in.jsonl", *mixed_lines(8), *bad)))
    assert loaded(instance) == before


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_every_insert_trigger_of_the_loaded_tables_has_its_bulk_statement(instance):
    with catalog(instance) as session:
        triggers = session.execute(sa.text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '% INSERT ON %' "
            "AND tbl_name IN ('dataset', 'metadatavalue', 'datasetfile')"
        )).scalars().all()  # fmt: skip
    assert sorted(triggers) == sorted([*sqlite_load.TRIGGERS_IN_BULK, *sqlite_load.TRIGGERS_KEPT])


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_while_a_load_in_one_go_runs_others_read_the_catalog_as_it_was(
    cli, instance, tmp_path, monkeypatch
):
    cli.user_key("ada")
    cli.user_key("bob")
    monkeypatch.setattr(imports, "CHUNK", 3)
    seen = []
    load = imports._Recorder.load

    def load_and_look(recorder, work, chunk):
        load(recorder, work, chunk)
        with closing(sqlite3.connect(instance / "dataflow.sqlite3", timeout=0)) as other:
            datasets = other.execute("SELECT count(*) FROM dataset").fetchone()[0]
            plan = other.execute(  # the index the pages of newest datasets walk
                "EXPLAIN QUERY PLAN SELECT id FROM dataset ORDER BY created_at DESC LIMIT 5"
            ).fetchall()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            seen.append((datasets, "ix_dataset_created_at" in str(plan)))

    monkeypatch.setattr(imports._Recorder, "load", load_and_look)
    cli("import", str(write(tmp_path / "in.jsonl", *mixed_lines(8))))
    assert seen == [(0, True)] * 3
    with catalog(instance) as session:
        assert session.scalar(sa.text("SELECT count(*) FROM dataset")) == 8


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("flags", "between"),
    [
        ([], [(0, False)] * 3),  # one transaction: nothing seen, the write lock held throughout
        (["--chunked"], [(0, True), (3, True), (6, True)]),
    ],
)
def test_chunked_commits_each_chunk_into_an_empty_catalog_so_others_write_between(
    cli, instance, tmp_path, monkeypatch, flags, between
):
    cli.user_key("ada")
    cli.user_key("bob")
    monkeypatch.setattr(imports, "CHUNK", 3)
    seen = []
    chunks = imports._chunks

    def looked_at_before_each(rows):
        for chunk in chunks(rows):
            with closing(sqlite3.connect(instance / "dataflow.sqlite3", timeout=0)) as other:
                datasets = other.execute("SELECT count(*) FROM dataset").fetchone()[0]
                try:
                    other.execute("BEGIN IMMEDIATE")
                    other.execute("ROLLBACK")
                    seen.append((datasets, True))
                except sqlite3.OperationalError as error:
                    assert "locked" in str(error)
                    seen.append((datasets, False))
            yield chunk

    monkeypatch.setattr(imports, "_chunks", looked_at_before_each)
    cli("import", *flags, str(write(tmp_path / "in.jsonl", *mixed_lines(8))))
    assert seen == between
    with catalog(instance) as session:
        assert session.scalar(sa.text("SELECT count(*) FROM dataset")) == 8


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_an_import_into_a_catalog_with_datasets_goes_in_chunks_and_counts_keys_once(
    cli, instance, tmp_path, monkeypatch
):
    cli.user_key("ada")
    cli.user_key("bob")
    used = []
    monkeypatch.setattr(imports.sqlite_load, "indexes_after", spy(used, sqlite_load.indexes_after))
    lines = mixed_lines(8)
    cli("import", str(write(tmp_path / "first.jsonl", *lines[:4])))
    cli("import", str(write(tmp_path / "second.jsonl", *lines[4:])))
    assert len(used) == 1
    with catalog(instance) as session:
        kept = session.execute(sa.text("SELECT * FROM metadatakey ORDER BY 1, 2, 3")).all()
        counted = session.execute(sa.text(
            "SELECT d.creator_id, v.field_name, coalesce(json_type(v.value), 'null'), count(*) "
            "FROM metadatavalue AS v JOIN dataset AS d ON d.id = v.dataset_id "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )).all()  # fmt: skip
    assert kept == counted and ("Sample-Id", 4) in {(key, n) for _, key, _, n in kept}


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_a_load_in_one_go_leaves_the_write_ahead_log_empty(cli, instance, tmp_path):
    cli.user_key("ada")
    cli.user_key("bob")
    # The server's connection, idle: the log is not removed when the import's connection closes.
    with closing(sqlite3.connect(instance / "dataflow.sqlite3")) as server:
        server.execute("SELECT count(*) FROM dataset").fetchone()
        cli("import", str(write(tmp_path / "in.jsonl", *mixed_lines(50))))
        assert server.execute("SELECT count(*) FROM dataset").fetchone() == (50,)
        assert (instance / "dataflow.sqlite3-wal").stat().st_size == 0


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_indexes_after_refuses_a_cursor_outside_a_transaction(instance):
    # Each DROP would commit on its own: a failure during the load would lose the indexes.
    with closing(sqlite3.connect(instance / "dataflow.sqlite3", isolation_level=None)) as db:
        indexes = "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
        before = db.execute(indexes).fetchone()
        with pytest.raises(RuntimeError, match="inside a transaction"):
            with sqlite_load.indexes_after(db.cursor(), imports.LOADED_TABLES):
                pass
        assert db.execute(indexes).fetchone() == before
