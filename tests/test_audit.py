"""The audit trail on a real SQLite catalog, without the app: appending, verifying, reading."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import Engine, text, update
from sqlmodel import SQLModel, col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit
from dataflow_lite.services.errors import Forbidden, Invalid
from dataflow_lite.services.identity import Identity, system
from dataflow_lite.store.db import UnauditedChange, make_engine, unit_of_work
from dataflow_lite.store.models import AuditEvent, User

from .conftest import catalog


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(tmp_path / "catalog.sqlite3", 5000)
    SQLModel.metadata.create_all(engine)
    return engine


@pytest.fixture
def rt(engine: Engine) -> Runtime:
    """What the audit functions use of a Runtime: its engine."""
    return cast(Runtime, SimpleNamespace(engine=engine))


def _user(engine: Engine, username: str, *, admin: bool = False) -> User:
    with unit_of_work(engine, audited=False) as work:  # the test's own setup
        user = User(username=username, is_admin=admin)
        work.session.add(user)
        work.session.flush()
        return user


@pytest.fixture
def alice(engine: Engine) -> Identity:
    return Identity(_user(engine, "alice"), "api-key 12", "192.0.2.7")


@pytest.fixture
def admin(engine: Engine) -> Identity:
    return Identity(_user(engine, "root", admin=True), "web-session", "192.0.2.1")


def _record(engine: Engine, identity: Identity, action: str, obj: str, ident: Any, **summary: Any):
    with unit_of_work(engine) as work:
        return audit.record(work, identity, action, obj, ident, summary)


def _fill(engine: Engine, alice: Identity, admin: Identity) -> None:
    """Six events: ids 1 to 6."""
    _record(engine, system(), "endpoint.register", "endpoint", "local", name="Local")
    _record(engine, admin, "user.add", "user", 1, username="alice")
    _record(engine, alice, "dataset.create", "dataset", 1, name="scan 1")
    _record(engine, alice, "file.add", "file", 1, dataset_id=1, name="a.tif")
    _record(engine, alice, "dataset.create", "dataset", 2, name="scan 2")
    changed = audit.changes({"is_admin": False, "name": "A"}, {"is_admin": True, "name": "A"})
    _record(engine, admin, "user.change", "user", 1, **changed)


def _sql(engine: Engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement))


def test_events_chain_and_verify(rt: Runtime, engine: Engine, alice: Identity, admin: Identity):
    _fill(engine, alice, admin)
    result = audit.verify(rt)
    assert result.ok and result.checked == 6 and result.bad_id is None, result
    total, rows = audit.list_events(rt, admin)
    assert total == 6
    assert [row["id"] for row in rows] == [6, 5, 4, 3, 2, 1]
    assert result.head == rows[0]["sha256"]
    first = rows[-1]
    assert first["prev_sha256"] == audit.GENESIS
    assert (first["user_id"], first["username"], first["via"]) == (None, None, "cli")
    assert [row["prev_sha256"] for row in rows[:-1]] == [row["sha256"] for row in rows[1:]]
    third = rows[3]
    assert (third["username"], third["via"], third["address"]) == (
        "alice",
        "api-key 12",
        "192.0.2.7",
    )
    assert (third["action"], third["object_type"], third["object_id"]) == (
        "dataset.create",
        "dataset",
        "1",
    )
    assert third["at"].tzinfo is UTC
    assert rows[0]["summary"] == {"is_admin": {"old": False, "new": True}}


def test_an_empty_trail_verifies(rt: Runtime):
    result = audit.verify(rt)
    assert (result.ok, result.checked, result.head) == (True, 0, audit.GENESIS)


def test_an_altered_row_is_named(rt: Runtime, engine: Engine, alice: Identity, admin: Identity):
    _fill(engine, alice, admin)
    _sql(engine, """UPDATE auditevent SET summary = '{"name": "scan 9"}' WHERE id = 3""")
    result = audit.verify(rt)
    assert (result.ok, result.bad_id, result.reason, result.checked) == (False, 3, "altered", 2)
    assert "row 3" in result.message


def test_a_rehashed_row_breaks_the_link_after_it(
    rt: Runtime, engine: Engine, alice: Identity, admin: Identity
):
    """Whoever alters a row and recomputes its hash still breaks the next row's link."""
    _fill(engine, alice, admin)
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        row = connection.execute(table.select().where(table.c.id == 3)).mappings().one()
        fields = {**row, "summary": {"name": "scan 9"}}
        connection.execute(
            text("UPDATE auditevent SET summary = :summary, sha256 = :sha WHERE id = 3"),
            {"summary": json.dumps(fields["summary"]), "sha": audit.digest(fields)},
        )
    result = audit.verify(rt)
    assert (result.ok, result.bad_id, result.reason) == (False, 4, "missing before it")


def test_a_removed_row_is_named_by_the_next(
    rt: Runtime, engine: Engine, alice: Identity, admin: Identity
):
    _fill(engine, alice, admin)
    _sql(engine, "DELETE FROM auditevent WHERE id = 3")
    result = audit.verify(rt)
    assert (result.ok, result.bad_id, result.reason, result.checked) == (
        False,
        4,
        "missing before it",
        2,
    )


def test_removed_first_and_newest_rows_are_found(
    rt: Runtime, engine: Engine, alice: Identity, admin: Identity
):
    _fill(engine, alice, admin)
    _sql(engine, "DELETE FROM auditevent WHERE id = 6")
    result = audit.verify(rt)
    assert (result.ok, result.bad_id, result.reason) == (False, 5, "missing after it")
    # SQLite's AUTOINCREMENT never hands out 6 again: the next event shows the gap too.
    _record(engine, alice, "dataset.create", "dataset", 3, name="scan 3")
    assert audit.verify(rt).bad_id == 7
    _sql(engine, "DELETE FROM auditevent WHERE id = 1")
    result = audit.verify(rt)
    assert (result.ok, result.bad_id, result.reason, result.checked) == (
        False,
        2,
        "missing before it",
        0,
    )


def test_verify_reads_in_batches(rt: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(audit, "VERIFY_BATCH", 3)
    for number in range(10):
        _record(engine, system("worker"), "transfer.retry", "transfer", number)
    assert audit.verify(rt).checked == 10
    _sql(engine, "UPDATE auditevent SET via = 'cli' WHERE id = 8")
    assert (audit.verify(rt).bad_id, audit.verify(rt).reason) == (8, "altered")


def test_concurrent_writers_keep_one_chain(rt: Runtime, engine: Engine):
    """Each append reads the newest hash under the write lock, so no two rows fork the chain."""

    def append(worker: int) -> None:
        for number in range(10):
            _record(engine, system(f"worker {worker}"), "transfer.retry", "transfer", number)

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = audit.verify(rt)
    assert (result.ok, result.checked) == (True, 40), result


def test_a_removed_user_stays_in_the_trail(
    rt: Runtime, engine: Engine, alice: Identity, admin: Identity
):
    _fill(engine, alice, admin)
    _sql(engine, "DELETE FROM user WHERE username = 'alice'")
    assert audit.verify(rt).ok
    total, rows = audit.list_events(rt, admin, user="alice")
    assert total == 3 and {row["user_id"] for row in rows} == {alice.user_id}


def test_filters_and_pages(rt: Runtime, engine: Engine, alice: Identity, admin: Identity):
    _fill(engine, alice, admin)
    total, rows = audit.list_events(rt, admin, user="alice")
    assert total == 3 and [row["id"] for row in rows] == [5, 4, 3]
    total, rows = audit.list_events(rt, admin, object_type="dataset")
    assert total == 2 and [row["id"] for row in rows] == [5, 3]
    total, rows = audit.list_events(rt, admin, object_type="user", object_id=1)
    assert total == 2 and [row["action"] for row in rows] == ["user.change", "user.add"]
    total, rows = audit.list_events(rt, admin, page=2, per_page=4)
    assert total == 6 and [row["id"] for row in rows] == [2, 1]
    total, rows = audit.list_events(rt, admin, page=3, per_page=4)
    assert total == 6 and rows == []


def test_time_filters(rt: Runtime, engine: Engine, alice: Identity, admin: Identity):
    _fill(engine, alice, admin)
    _sql(engine, "UPDATE auditevent SET at = '2024-01-01 10:00:00.000000' WHERE id <= 2")
    total, rows = audit.list_events(rt, admin, until=datetime(2024, 1, 2, tzinfo=UTC))
    assert total == 2 and [row["id"] for row in rows] == [2, 1]
    total, _ = audit.list_events(rt, admin, since=datetime(2024, 1, 1, 10, tzinfo=UTC))
    assert total == 6
    total, _ = audit.list_events(rt, admin, since=datetime(2024, 1, 1, 10, 0, 1))  # naive: UTC
    assert total == 4
    paris = datetime.fromisoformat("2024-01-01T11:00:00+01:00")  # 10:00 UTC
    total, _ = audit.list_events(rt, admin, until=paris)
    assert total == 0


def test_only_admins_read_the_trail(rt: Runtime, engine: Engine, alice: Identity):
    _record(engine, alice, "dataset.create", "dataset", 1, name="scan 1")
    with pytest.raises(Forbidden):
        audit.list_events(rt, alice)
    assert audit.list_events(rt, system())[0] == 1


def test_paging_is_checked(rt: Runtime, admin: Identity):
    with pytest.raises(Invalid) as refused:
        audit.list_events(rt, admin, page=0)
    assert refused.value.errors == {"page": ["must be 1 or more"]}
    with pytest.raises(Invalid):
        audit.list_events(rt, admin, per_page=audit.MAX_PER_PAGE + 1)


def test_secrets_are_masked_at_any_depth(rt: Runtime, engine: Engine, admin: Identity):
    secrets = {
        "password": "hunter2",
        "password_hash": "$argon2id$v=19$abc",
        "secret_sha256": "f" * 64,
        "client_secret": "s3cr3t-client",
        "token": "tok-123",
        "apiKey": "dfl_abcdef",
        "key": "raw-key",
    }
    summary = {
        **secrets,
        "options": {"host": "example.org", "private_key": "-----BEGIN KEY-----"},
        "endpoints": [{"name": "x", "access_token": "tok-456"}],
        **audit.changes({"password_hash": "old-hash"}, {"password_hash": "new-hash"}),
        "key_id": 12,
        "key_name": "laptop",
    }
    _record(engine, admin, "user.change", "user", 1, **summary)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT summary FROM auditevent")).scalar_one()
    for value in [*secrets.values(), "-----BEGIN KEY-----", "tok-456", "old-hash", "new-hash"]:
        assert value not in stored
    kept = json.loads(stored)
    assert {name: kept[name] for name in secrets} == dict.fromkeys(secrets, audit.REDACTED)
    assert kept["options"] == {"host": "example.org", "private_key": audit.REDACTED}
    assert kept["endpoints"] == [{"name": "x", "access_token": audit.REDACTED}]
    assert (kept["key_id"], kept["key_name"]) == (12, "laptop")
    assert audit.verify(rt).ok


def test_summaries_keep_what_json_cannot_hold_as_text(rt: Runtime, engine: Engine):
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    _record(engine, system(), "field.add", "field", 3, at=moment, path=Path("a/b"), tags={"b", "a"})
    total, rows = audit.list_events(rt, system())
    assert rows[0]["summary"] == {
        "at": "2024-05-06T07:08:09.000000Z",
        "path": "a/b",
        "tags": ["a", "b"],
    }
    assert audit.verify(rt).ok


def test_changes_names_only_what_differs():
    before = {"name": "A", "is_admin": False, "gone": 1}
    after = {"name": "A", "is_admin": True, "new": "x"}
    assert audit.changes(before, after) == {
        "is_admin": {"old": False, "new": True},
        "new": {"old": None, "new": "x"},
        "gone": {"old": 1, "new": None},
    }


def test_the_trail_is_appended_only_while_writing(engine: Engine, admin: Identity):
    with unit_of_work(engine, write=False) as work, pytest.raises(AssertionError):
        audit.record(work, admin, "user.add", "user", 2, {})


def test_a_rolled_back_change_leaves_no_event(rt: Runtime, engine: Engine, admin: Identity):
    with pytest.raises(RuntimeError), unit_of_work(engine) as work:
        audit.record(work, admin, "user.add", "user", 2, {"username": "bob"})
        raise RuntimeError("the change failed")
    _record(engine, admin, "user.add", "user", 3, username="carol")
    result = audit.verify(rt)
    assert (result.ok, result.checked) == (True, 1), result


def test_services_record_their_changes(tmp_path: Path):
    """Creating a dataset, changing a setting and adding a file each leave one event."""
    from dataflow_lite import bootstrap
    from dataflow_lite.services import dataset_files, datasets, user_settings
    from dataflow_lite.store.models import Endpoint

    rt = bootstrap.build(tmp_path / "instance", overrides={"queue_immediate": True})
    with unit_of_work(rt.engine, audited=False) as work:
        for ident, name in (("e1", "first"), ("e2", "second")):
            options = {"path": str(tmp_path / name)}
            work.session.add(Endpoint(id=ident, name=name, adapter="local", options=options))
    alice = Identity(_user(rt.engine, "alice"), "api-key 3", "192.0.2.7")
    made = datasets.create_dataset(rt, alice, "scan 1", None, [("sample", "pzt")])
    user_settings.change_setting(rt, alice, user_settings.DESTINATION, "e2")
    user_settings.change_setting(rt, alice, user_settings.DESTINATION, "e2")  # no change
    staged = tmp_path / "upload.bin"
    staged.write_bytes(b"data")
    digest = hashlib.sha256(b"data").hexdigest()
    dataset_files.add_file(
        rt, alice, made["id"], "raw", dataset_files.StagedFile(staged, "a.bin", 4, digest)
    )
    total, rows = audit.list_events(rt, system())
    assert total == 3
    added, setting, created = rows
    assert (added["action"], added["summary"]["path"], added["summary"]["sha256"]) == (
        "file.add",
        "raw/a.bin",
        digest,
    )
    assert (created["action"], created["object_id"], created["username"]) == (
        "dataset.create",
        str(made["id"]),
        "alice",
    )
    assert created["summary"]["metadata"] == {"sample": "pzt"}
    assert setting["summary"] == {
        "setting": user_settings.DESTINATION,
        "value": {"old": None, "new": "e2"},
    }
    assert audit.verify(rt).ok


def test_a_change_that_is_not_recorded_is_refused_and_rolled_back(engine: Engine):
    with pytest.raises(UnauditedChange), unit_of_work(engine) as work:
        work.session.add(User(username="mallory"))
    with unit_of_work(engine, write=False) as work:
        assert work.session.exec(select(User)).all() == []


def test_the_api_shows_the_trail_to_admins_only(client, cli, auth):
    admin_key = cli.user_key("root", admin=True)
    made = client.post("/api/v1/datasets", json={"name": "scan"}, headers=auth)
    assert made.status_code == 201
    page = client.get(
        "/api/v1/audit",
        query_string={"user": "suhas", "object_type": "dataset"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert page.status_code == 200, page.json
    (event,) = page.json["results"]
    assert event["action"] == "dataset.create"
    assert event["object_id"] == str(made.json["id"])
    assert event["via"].startswith("api-key ") and event["address"] == "127.0.0.1"
    assert event["summary"]["name"] == "scan"
    refused = client.get("/api/v1/audit", headers=auth)
    assert refused.status_code == 403
    assert refused.json["message"] == "only an administrator may do this"


def test_audit_verify_names_the_first_altered_row(cli, instance: Path):
    cli("user", "add", "ada")
    cli("user", "add", "bob")
    # init registered the default endpoint: that is the first event.
    assert "audit trail intact: 3 rows" in cli("audit", "verify")
    listed = cli("audit", "list").replace("}\n{", "},{")
    events = json.loads(f"[{listed}]")
    assert [event["action"] for event in events] == ["user.add", "user.add", "endpoint.register"]
    assert {event["via"] for event in events} == {"cli"}
    with catalog(instance) as db:
        altered = {"username": "eve"}
        db.execute(update(AuditEvent).where(col(AuditEvent.id) == 2).values(summary=altered))
    said = cli.fails("audit", "verify")
    assert "audit trail broken at row 2: altered" in said
    assert "Traceback" not in said
