"""Schema migrations: one head, the models match them, and older databases upgrade intact."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel, select

from dataflow_lite import create_app
from dataflow_lite.store import credentials, db, schema
from dataflow_lite.store.models import Dataset, DatasetFile, Transfer

REPO = Path(__file__).resolve().parents[1]
OLD_RELEASE = "7b9c32f"
DATABASE = "dataflow.sqlite3"


def run_cli(instance: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60):
    """The real ``dataflow-lite`` command in a subprocess (its output and exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def model_differences(database: Path) -> list:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_name": schema.include_name, "compare_type": True}
            )
            # SQLAlchemy cannot reflect the typed value indexes (expressions); include_name
            # leaves them out of the comparison, and test_typed_value_indexes_exist checks them.
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", "Skipped unsupported reflection of expression-based index"
                )
                return compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()


def structure(database: Path) -> set[tuple[str, str, str]]:
    """Every table, index and trigger of the database with its SQL, spaces normalised."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        return {
            (kind, name, re.sub(r"\s+", " ", sql or ""))
            for kind, name, table, sql in rows
            if table != "alembic_version"
        }


def clauses(database: Path) -> set[tuple[str, str, frozenset[str]]]:
    """``structure``, each statement's clauses as a set: a rebuilt table may order them anew."""
    bodies = [
        (kind, name, sql.partition("(")[2].strip().removesuffix(")"))
        for kind, name, sql in structure(database)
    ]
    return {
        (kind, name, frozenset(clause.strip() for clause in re.split(r",(?![^()]*\))", body)))
        for kind, name, body in bodies
    }


def json_value(row: tuple, column: int) -> tuple:
    """``row`` with the JSON text in ``column`` read as its value (numbers stay as they are)."""
    value = row[column]
    return (
        *row[:column],
        json.loads(value) if isinstance(value, str) else value,
        *row[column + 1 :],
    )


def rows(database: Path) -> dict[str, list[tuple]]:
    """Every row of every table (the full-text index's shadow tables aside), in a fixed order."""
    with sqlite3.connect(database) as connection:
        names = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                "'dataset_text_%' AND name NOT LIKE 'file_name_text%' "
                "AND name NOT IN ('alembic_version', 'dataset_text')"
            )
        ]
        found = {
            name: sorted(connection.execute(f'SELECT * FROM "{name}"'), key=repr) for name in names
        }
        found["dataset_text"] = sorted(connection.execute("SELECT rowid, body FROM dataset_text"))
    return found


def test_the_migrations_have_one_head():
    assert len(ScriptDirectory.from_config(schema.alembic_config()).get_heads()) == 1


def test_a_new_database_at_head_matches_the_models(tmp_path: Path):
    done = schema.upgrade(tmp_path / DATABASE)
    assert (done.from_revision, done.to_revision, done.backup) == (None, schema.head(), None)
    assert model_differences(tmp_path / DATABASE) == []
    engine = db.make_engine(tmp_path / DATABASE, 1000)
    assert schema.current(engine) == schema.head()
    schema.check(engine)
    engine.dispose()


def test_a_new_instance_is_created_at_head(tmp_path: Path):
    app = create_app(instance_path=tmp_path / "instance")
    assert schema.current(app.extensions["dataflow_lite.runtime"].engine) == schema.head()


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source of release 7b9c32f, from git."""
    tree = tmp_path_factory.mktemp("release-7b9c32f")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", OLD_RELEASE], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def old_release(old_tree: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Python with the old release first on the path (the script checks it really is)."""
    env = dict(os.environ)
    # Every adapter from the old tree too: the installed entry points load them by module name.
    adapters = [str(old_tree / "adapters" / name) for name in ("local", "sftp", "globus")]
    env["PYTHONPATH"] = os.pathsep.join([str(old_tree), *adapters])
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=180
    )


def new_env() -> dict[str, str]:
    """The environment of this test run: the code under test, never the old release."""
    return dict(os.environ)


def test_an_instance_of_the_previous_release_upgrades_with_everything_in_it(
    old_tree: Path, tmp_path: Path
):
    instance = tmp_path / "instance"
    filled = old_release(old_tree, str(Path(__file__).with_name("old_release_fill.py")),
                         str(instance), str(old_tree))  # fmt: skip
    assert filled.returncode == 0, filled.stderr
    made = json.loads(filled.stdout)
    before_rows, before_structure = rows(instance / DATABASE), structure(instance / DATABASE)

    # The baseline is exactly the schema the release created.
    schema.upgrade(tmp_path / "baseline.sqlite3", revision=schema.BASELINE)
    assert structure(tmp_path / "baseline.sqlite3") == before_structure

    with pytest.raises(schema.SchemaOutOfDate, match="dataflow-lite db upgrade"):
        create_app(instance_path=instance)

    upgraded = run_cli(instance, "db", "upgrade", env=new_env())
    assert upgraded.returncode == 0, upgraded.stderr
    backup = Path(re.search(r"database backed up to (\S+)", upgraded.stdout).group(1))
    assert backup.parent == instance and backup.exists()
    assert f"-> {schema.head()}" in upgraded.stdout
    assert rows(backup) == before_rows  # the copy is the database as it was
    after_rows = rows(instance / DATABASE)
    # What later revisions add: an empty audit trail and SQLite's AUTOINCREMENT sequence.
    assert after_rows.pop("auditevent") == [] and after_rows.pop("sqlite_sequence") == []
    # Metadata values are TEXT since 0003: the same JSON values, now kept as their text.
    for table in (before_rows, after_rows):
        table["metadatavalue"] = [json_value(row, 3) for row in table["metadatavalue"]]
    # Users have a session generation since 0004, starting at 0.
    assert {row[-1] for row in after_rows["user"]} == {0}
    after_rows["user"] = [row[:-1] for row in after_rows["user"]]
    # Resumable uploads have a table since 0005, empty.
    assert after_rows.pop("resumableupload") == []
    # Key counts since 0006: each user's keys, counted from the values that were there.
    with sqlite3.connect(instance / DATABASE) as connection:
        expected = sorted(connection.execute(
            "SELECT d.creator_id, m.field_name, json_type(m.value), count(*) FROM metadatavalue m "
            "JOIN dataset d ON d.id = m.dataset_id GROUP BY 1, 2, 3"
        ))  # fmt: skip
        names = sorted(connection.execute("SELECT rowid, name FROM file_name_text"))
    assert expected and after_rows.pop("metadatakey") == expected
    # ... and the file names' trigram index, filled from the files.
    assert names == sorted((row[0], row[2]) for row in after_rows["datasetfile"])
    # The keys' fingerprint has a table since 0008, empty until a server opens the catalog.
    assert after_rows.pop("instancekeys") == []
    # ... and transfers name the host that staged their file: none before (any host runs them).
    assert {row[-1] for row in after_rows["transfer"]} == {None}
    after_rows["transfer"] = [row[:-1] for row in after_rows["transfer"]]
    # Hosts check in since 0009: none has yet.
    assert after_rows.pop("host") == []
    # Metadata values name their dataset's owner since 0014.
    owners = {row[0]: row[2] for row in after_rows["dataset"]}
    assert [row[-1] for row in after_rows["metadatavalue"]] == [
        owners[row[1]] for row in after_rows["metadatavalue"]
    ]
    after_rows["metadatavalue"] = [row[:-1] for row in after_rows["metadatavalue"]]
    # SQLite records from which dataset on ids follow creation order since 0018: the first here.
    made_at = [(row[0], row[6]) for row in sorted(after_rows["dataset"])]
    assert [when for _, when in made_at] == sorted(when for _, when in made_at)
    assert after_rows.pop("dataset_order") == [(0, made_at[-1][1], made_at[-1][0])]
    assert after_rows == before_rows
    schema.upgrade(tmp_path / "new.sqlite3")
    assert clauses(instance / DATABASE) == clauses(tmp_path / "new.sqlite3")
    assert model_differences(instance / DATABASE) == []

    current = run_cli(instance, "db", "current", env=new_env())
    assert current.stdout.splitlines() == [f"current: {schema.head()}", f"head: {schema.head()}"]

    app = create_app({"queue_immediate": True}, instance_path=instance)
    client = app.test_client()
    for owner, dataset in made["datasets"].items():
        auth = {"Authorization": f"Bearer {made['keys'][owner]}"}
        shown = client.get(f"/api/v1/datasets/{dataset['id']}", headers=auth)
        assert shown.status_code == 200, shown.json
        assert shown.json == dataset
        transfers = client.get(f"/api/v1/transfers?dataset_id={dataset['id']}", headers=auth)
        assert transfers.json == made["transfers"][owner]
    ada = {"Authorization": f"Bearer {made['keys']['ada']}"}
    assert made["datasets"]["ada"]["dataset_files"]  # files and metadata came along
    assert made["datasets"]["ada"]["metadata_field_values"]
    found = client.get("/api/v1/datasets/search?q=PZT", headers=ada).json
    assert [d["id"] for d in found["results"]] == [made["datasets"]["ada"]["id"]]
    # The new code writes to the upgraded database too.
    assert client.post("/api/v1/datasets", json={"name": "after"}, headers=ada).status_code == 201

    rt = app.extensions["dataflow_lite.runtime"]
    with db.session_scope(rt.engine) as session:
        kept = credentials.load(
            session, rt.cipher, made["credential"]["user_id"], made["credential"]["endpoint_id"]
        )
    assert (kept.username, kept.secret) == ("ada-remote", "s3cret pa+ss")
    rt.engine.dispose()


def test_an_older_schema_is_refused_with_one_line(tmp_path: Path):
    instance = tmp_path / "instance"
    instance.mkdir()
    schema.upgrade(instance / DATABASE, revision=schema.BASELINE)
    with pytest.raises(schema.SchemaOutOfDate, match="run 'dataflow-lite db upgrade'"):
        create_app(instance_path=instance)
    for command in (["serve", "--bind", "127.0.0.1:0"], ["worker"], ["user", "add", "eve"]):
        result = run_cli(instance, *command, env=new_env(), timeout=30)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "dataflow-lite db upgrade" in lines[0], result.stderr
    current = run_cli(instance, "db", "current", env=new_env())
    assert current.stdout.splitlines() == [
        f"current: {schema.BASELINE}",
        f"head: {schema.head()}",
    ]
    assert run_cli(instance, "init", env=new_env()).returncode == 0  # init upgrades
    assert run_cli(instance, "user", "add", "eve", env=new_env()).returncode == 0


def _drop_the_later_constraints(database: Path) -> None:
    """Make a baseline database look like one made before the folder unique and its peers."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA foreign_keys=OFF")
    (ddl,) = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'dataset'").fetchone()
    indexes = [
        sql
        for (sql,) in connection.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'dataset' AND type = 'index' "
            "AND sql IS NOT NULL"
        )
    ]
    assert "UNIQUE (endpoint_id, folder), " in ddl
    connection.executescript(
        "BEGIN;"
        + ddl.replace("UNIQUE (endpoint_id, folder), ", "").replace("dataset (", "dataset_old (", 1)
        + "; INSERT INTO dataset_old SELECT * FROM dataset; DROP TABLE dataset;"
        " ALTER TABLE dataset_old RENAME TO dataset;"
        + ";".join(indexes)
        + "; ALTER TABLE transfer DROP COLUMN claim; ALTER TABLE metadatafield DROP COLUMN"
        " persist; DROP TABLE loginthrottle; DROP TABLE alembic_version; COMMIT;"
    )
    connection.close()


def test_a_database_from_before_the_folder_unique_gets_it_and_distinct_folders(tmp_path: Path):
    database = tmp_path / DATABASE
    schema.upgrade(database, revision=schema.BASELINE)
    _drop_the_later_constraints(database)
    with sqlite3.connect(database) as connection:
        connection.executescript(
            """
            INSERT INTO user VALUES (1, 'ada', '', 0, 1, '2026-01-01 00:00:00', NULL);
            INSERT INTO endpoint VALUES ('e1', 'local', 'local', '{}', 1, '2026-01-01 00:00:00');
            INSERT INTO endpoint VALUES ('e2', 'other', 'local', '{}', 0, '2026-01-01 00:00:00');
            INSERT INTO instrument VALUES (1, 'Cypher', '', NULL);
            INSERT INTO metadatafield VALUES (1, 1, 'Mode', 'string', 0, NULL, '', 0);
            INSERT INTO dataset VALUES (1, 'a', 1, NULL, 'e1', 'x/2026-01-01/000000_a',
                                        '2026-01-01 00:00:00');
            INSERT INTO dataset VALUES (2, 'a', 1, NULL, 'e1', 'x/2026-01-01/000000_a',
                                        '2026-01-01 00:00:00');
            INSERT INTO dataset VALUES (3, 'a', 1, NULL, 'e2', 'x/2026-01-01/000000_a',
                                        '2026-01-01 00:00:00');
            INSERT INTO dataset VALUES (4, 'a', 1, NULL, 'e1', 'x/2026-01-01/000000_a',
                                        '2026-01-01 00:00:00');
            INSERT INTO datasetfile VALUES (1, 2, 'f', '', 0, 1, NULL, NULL,
                                            '2026-01-01 00:00:00');
            INSERT INTO transfer (id, kind, dataset_id, file_id, endpoint_id, user_id, adapter,
                state, attempts, permanent, bytes_moved, memo, next_attempt_at, created_at,
                updated_at)
            VALUES (1, 'file', 2, 1, 'e1', 1, 'local', 'done', 1, 0, 1, '{}',
                    '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00');
            """
        )
    engine = db.make_engine(database, 1000)
    with pytest.raises(schema.SchemaOutOfDate):
        schema.check(engine)

    done = schema.upgrade(database)
    assert done.from_revision is None and done.backup is not None and done.backup.exists()
    schema.check(engine)
    assert model_differences(database) == []
    uniques = {
        tuple(c["column_names"]) for c in sa.inspect(engine).get_unique_constraints("dataset")
    }
    assert ("endpoint_id", "folder") in uniques
    with db.session_scope(engine) as session:
        folders = {d.id: (d.endpoint_id, d.folder) for d in session.exec(select(Dataset))}
        assert folders == {
            1: ("e1", "x/2026-01-01/000000_a"),
            2: ("e1", "x/2026-01-01/000000_a-2"),
            3: ("e2", "x/2026-01-01/000000_a"),
            4: ("e1", "x/2026-01-01/000000_a-4"),
        }
        # The recreated table kept the rows that point at it (no cascade on the way).
        assert session.get(DatasetFile, 1).dataset_id == 2
        transfer = session.get(Transfer, 1)
        assert (transfer.dataset_id, transfer.claim) == (2, None)
    engine.dispose()


def test_duplicates_another_unique_forbids_stop_the_upgrade_unchanged(tmp_path: Path):
    database = tmp_path / DATABASE
    schema.upgrade(database, revision=schema.BASELINE)
    connection = sqlite3.connect(database, isolation_level=None)
    connection.executescript(
        "DROP INDEX ix_user_username; DROP TABLE alembic_version;"
        "INSERT INTO user VALUES (1, 'ada', '', 0, 1, '2026-01-01 00:00:00', NULL);"
        "INSERT INTO user VALUES (2, 'ada', '', 0, 1, '2026-01-01 00:00:00', NULL);"
    )
    connection.close()
    before = rows(database)
    with pytest.raises(schema.UpgradeFailed, match="username='ada'"):
        schema.upgrade(database)
    assert rows(database) == before
    assert schema.status(database) == (None, True)


@pytest.mark.sqlite
def test_db_backup_copies_the_catalog_while_it_is_in_use(cli, instance: Path, tmp_path: Path):
    cli("user", "add", "ada")
    target = tmp_path / "catalog-copy.sqlite3"
    said = run_cli(instance, "db", "backup", str(target), env=new_env())
    assert said.returncode == 0, said.stderr
    assert f"database backed up to {target}" in said.stdout
    for key in ("secret_key", "password.key", "local-folders.key"):  # the keys go with it
        assert str(instance / key) in said.stderr
    assert rows(target) == rows(instance / DATABASE)
    again = run_cli(instance, "db", "backup", str(target), env=new_env())
    assert again.returncode == 1 and "exists already" in again.stderr
    assert "Traceback" not in again.stderr
    assert rows(target) == rows(instance / DATABASE)  # the first copy is untouched
