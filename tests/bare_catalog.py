"""An empty catalog on either backend for the store's own tests: two users (ids 1 and 2, neither
an admin) and one default local endpoint (id ``e``), no app around it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from dataflow_lite.store import db, schema


def bare_catalog(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, name: str
) -> Engine:
    """The catalog of a fixture parametrised with ``sqlite`` and ``postgresql``."""
    if request.param == "postgresql":
        server = request.getfixturevalue("postgresql_server")
        database: db.Database | Path = db.Database.from_setting(Path("."), server.create_database())
    else:
        database = Path(tmp_path_factory.mktemp(name)) / "catalog.sqlite3"
    assert not isinstance(database, str)
    schema.upgrade(database)
    engine = db.make_engine(database, 5000)
    with engine.begin() as connection:
        for user in (1, 2):
            connection.execute(text(
                'INSERT INTO "user" (id, username, name, is_admin, is_active, created_at, '
                "session_generation) VALUES (:id, :name, '', :no, :yes, '2020-01-01 00:00:00', 0)"
            ), {"id": user, "name": f"user{user}", "no": False, "yes": True})  # fmt: skip
        connection.execute(text(
            "INSERT INTO endpoint (id, name, adapter, options, is_default, created_at) "
            "VALUES ('e', 'local', 'local', '{}', :yes, '2020-01-01 00:00:00')"
        ), {"yes": True})  # fmt: skip
    return engine
