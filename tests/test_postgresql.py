"""The catalog on a real PostgreSQL: the migrations, the models, the CLI and concurrent writers.

Search on PostgreSQL (``tsvector``, ``pg_trgm``) is not here yet: these tests cover what runs the
same on both databases, through the same code.
"""

# The fixtures come from tests/postgres.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from dataflow_lite import create_app
from dataflow_lite.store import db, pg_search, schema
from dataflow_lite.store.db import Database

from .conftest import Cli
from .postgres import postgresql_database, postgresql_server  # noqa: F401  (fixtures)


def differences(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_name": schema.include_name, "compare_type": True}
            )
            return compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()


def test_every_revision_upgrades_a_postgresql_database_to_the_models(postgresql_database: str):
    database = Database.from_setting(Path("."), postgresql_database)
    revisions = [
        script.revision
        for script in reversed(
            list(ScriptDirectory.from_config(schema.alembic_config()).walk_revisions())
        )
    ]
    for revision in revisions:  # one step at a time, as successive releases would
        done = schema.upgrade(database, revision=revision)
        assert done.to_revision == revision and done.backup is None  # pg_dump's job, not ours
    assert revisions[-1] == schema.head()
    assert differences(postgresql_database) == []
    assert schema.upgrade(database).from_revision == schema.head()  # nothing left to do


def test_revision_0015_indexes_text_as_search_compares_it():
    """The typed text index holds a value's first TEXT_PREFIX characters: search's comparison
    must name the same (the revision writes its expressions out, as applied)."""
    revision = importlib.import_module(
        "dataflow_lite.store.migrations.versions.0015_postgresql_owner_lists"
    )
    assert revision.TEXT_PREFIX == pg_search.TEXT_PREFIX


def test_rows_of_the_baseline_survive_the_upgrade(postgresql_database: str):
    database = Database.from_setting(Path("."), postgresql_database)
    schema.upgrade(database, revision=schema.BASELINE)
    engine = sa.create_engine(postgresql_database)
    with engine.begin() as connection:
        run = connection.exec_driver_sql
        run("INSERT INTO \"user\" (id, username, name, is_admin, is_active, created_at) "
            "VALUES (1, 'ada', 'Ada', true, true, '2026-01-02 03:04:05')")  # fmt: skip
        run("INSERT INTO endpoint (id, name, adapter, options, is_default, created_at) "
            "VALUES ('e1', 'local', 'local', '{\"path\": \"/data\"}', true, now())")  # fmt: skip
        run("INSERT INTO dataset (id, name, creator_id, endpoint_id, folder, created_at) "
            "VALUES (7, 'scan', 1, 'e1', 'x/2026-01-02/030405_scan', now())")  # fmt: skip
        run("INSERT INTO metadatavalue (dataset_id, field_name, value) VALUES "
            "(7, 'Temperature', '2.0'), (7, 'Sample', '\"PZT\"')")  # fmt: skip
        run("INSERT INTO dataset_text (rowid, body) VALUES (7, 'scan\nSample\nPZT Café')")
    done = schema.upgrade(database)
    assert (done.from_revision, done.to_revision) == (schema.BASELINE, schema.head())
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT field_name, value, owner_id FROM metadatavalue"
        ).all()
        values = {name: text for name, text, _ in rows}
        owners = {owner for _, _, owner in rows}
        generation = connection.exec_driver_sql('SELECT session_generation FROM "user"').scalar()
        body, tokens = connection.exec_driver_sql(
            "SELECT body, tokens::text FROM dataset_text"
        ).one()
        # Written anew by 0016: its key and index, and nothing left of the old table.
        indexes = connection.exec_driver_sql(
            "SELECT indexname FROM pg_indexes WHERE tablename LIKE 'dataset_text%%'"
        ).scalars()
        leftover = connection.exec_driver_sql("SELECT to_regclass('dataset_text_old')").scalar()
    engine.dispose()
    assert {name: json.loads(text) for name, text in values.items()} == {
        "Temperature": 2.0,
        "Sample": "PZT",
    }
    assert isinstance(json.loads(values["Temperature"]), float)  # a float stays a float
    assert generation == 0
    assert owners == {1}  # values name their dataset's owner since 0014
    assert tokens == "'#1' 'cafe' 'pzt' 'sample' 'scan'"  # listed since 0015, as FTS5 folds them
    assert body == " scan sample pzt cafe "  # spelled since 0016
    assert set(indexes) == {"dataset_text_pkey", "ix_dataset_text_tokens"} and leftover is None


def on_postgresql(instance: Path, url: str) -> Cli:
    instance.mkdir()
    (instance / "config.toml").write_text(f"database = {json.dumps(url)}\n")
    cli = Cli(instance)
    cli("init")
    return cli


def test_an_instance_on_postgresql_serves_the_api_and_keeps_its_audit_chain(
    postgresql_database: str, tmp_path: Path
):
    cli = on_postgresql(tmp_path / "instance", postgresql_database)
    assert cli("db", "current").splitlines() == [
        f"current: {schema.head()}",
        f"head: {schema.head()}",
    ]
    key = cli.user_key("ada")
    app = create_app(instance_path=tmp_path / "instance")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    made = client.post(
        "/api/v1/datasets",
        json={
            "name": "Scan on PostgreSQL",
            "metadata_field_values_attributes": [
                {"field_name": "Sample", "field_value": "PZT"},
                {"field_name": "T", "field_value": 2.0},
            ],
        },
        headers=auth,
    )
    assert made.status_code == 201, made.json
    shown = client.get(f"/api/v1/datasets/{made.json['id']}", headers=auth).json
    values = {v["field_name"]: v["field_value"] for v in shown["metadata_field_values"]}
    assert values == {"Sample": "PZT", "T": "2.0"}  # a float is still a float
    assert shown["created_at"] == made.json["created_at"]

    # Search answers on PostgreSQL as on SQLite: the words, the typed value, the key counts.
    ident = made.json["id"]
    for q in ("PZT", "pz", "Sample:pzt", "T>1.5", "T:2"):
        answer = client.get("/api/v1/datasets/search", query_string={"q": q}, headers=auth)
        assert answer.status_code == 200, (q, answer.json)
        assert [d["id"] for d in answer.json["results"]] == [ident], q
    assert client.get("/api/v1/datasets/search?q=T>2", headers=auth).json["total"] == 0
    keys = {row["key"]: row["types"] for row in client.get("/api/v1/metadata-keys",
                                                            headers=auth).json}  # fmt: skip
    assert keys == {"Sample": ["text"], "T": ["real"]}

    # Writers from many threads at once take turns: every row lands, and the audit trail's hash
    # chain (each row covers the one before) stays whole.
    errors: list[BaseException] = []

    def create(number: int) -> None:
        try:
            answer = app.test_client().post(
                "/api/v1/datasets", json={"name": f"parallel {number}"}, headers=auth
            )
            assert answer.status_code == 201, answer.json
        except BaseException as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert "intact" in cli("audit", "verify")
    app.extensions["dataflow_lite.runtime"].engine.dispose()


def test_a_postgresql_that_cannot_be_reached_is_one_line(tmp_path: Path):
    instance = tmp_path / "instance"
    instance.mkdir()
    # Port 1 on the loopback: nothing listens, the connection is refused at once.
    (instance / "config.toml").write_text('database = "postgresql://nobody@127.0.0.1:1/none"\n')
    result = subprocess.run(
        [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), "init"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the catalog cannot be used" in lines[0], result.stderr


@pytest.mark.parametrize(
    "value, message",
    [
        ("mysql://x@y/z", "'mysql' is not supported"),
        ("not a url://", "is not a database URL"),
    ],
)
def test_a_database_setting_that_names_no_usable_database_is_refused(value, message, tmp_path):
    with pytest.raises(db.DatabaseUrlError, match=message):
        Database.from_setting(tmp_path, value)


def test_backups_of_a_postgresql_catalog_are_pg_dumps(postgresql_database: str, tmp_path: Path):
    cli = on_postgresql(tmp_path / "instance", postgresql_database)
    said = cli.fails("db", "backup", str(tmp_path / "copy"))
    assert "back it up with pg_dump" in said and "Traceback" not in said
