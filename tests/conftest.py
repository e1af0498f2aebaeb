"""Fixtures: a fresh instance per test, the app, its client, the CLI, a real gunicorn server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argon2
import pytest
import requests
from click.testing import CliRunner
from flask import Flask
from sqlmodel import Session

from dataflow_lite import bootstrap, create_app
from dataflow_lite.adapter import adapter_settings, discover_adapters
from dataflow_lite.cli.base import main
from dataflow_lite.services import logins
from dataflow_lite.settings import load_settings
from dataflow_lite.store.db import Database, make_engine

from .postgres import (  # noqa: F401  (fixtures)
    postgresql_at_head,
    postgresql_database,
    postgresql_server,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fail-on-skip",
        action="store_true",
        default=os.environ.get("CI") == "true",
        help="Fail the run when any test was skipped (on by default in CI).",
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if session.config.getoption("--fail-on-skip") and skipped and exitstatus == 0:
        reporter.write_line(f"FAILED: {len(skipped)} test(s) skipped with --fail-on-skip", red=True)
        session.exitstatus = 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``sshd`` every test that starts the real sshd (through tests/sshd.py's fixtures).

    Under pytest-xdist (``-n 2 --dist loadgroup``) they also share one worker, and so the one
    test account that ``ssh_user`` creates with useradd per session.

    Tests marked ``sqlite`` are about the SQLite file itself: they do not run on PostgreSQL.
    """
    for item in items:
        if "ssh_user" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sshd)
            item.add_marker(pytest.mark.xdist_group("sshd"))
    if not TEST_DATABASES:
        raise pytest.UsageError(f"DATAFLOW_TEST_DATABASE must be one of {', '.join(BACKENDS)}")
    pinned = [
        item
        for item in items
        if item.get_closest_marker("sqlite")
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("instance") == "postgresql"
    ]
    if pinned:
        config.hook.pytest_deselected(items=pinned)
        items[:] = [item for item in items if item not in pinned]


# Cheap argon2 for the tests: full cost in every login and password change of the web tests is
# most of the suite's time. Servers started by the tests (gunicorn) keep the real cost.
CHEAP_HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
CHEAP_DUMMY_HASH = CHEAP_HASHER.hash("no such user")


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash and check passwords in this process with argon2's lowest parameters."""
    monkeypatch.setattr(logins, "_hasher", CHEAP_HASHER)
    monkeypatch.setattr(logins, "_DUMMY_HASH", CHEAP_DUMMY_HASH)


@dataclass
class Cli:
    """The ``dataflow-lite`` command on one instance folder."""

    instance: Path

    def __call__(self, *args: str, input: str | None = None) -> str:
        result = CliRunner().invoke(main, ["--instance", str(self.instance), *args], input=input)
        assert result.exit_code == 0, result.output
        return result.stdout

    def fails(self, *args: str) -> str:
        """Run a command that must fail; return what it printed."""
        return self.fails_with_input(*args, input=None)

    def fails_with_input(self, *args: str, input: str | None) -> str:
        """Run a command that must fail, with ``input`` on stdin; return what it printed."""
        result = CliRunner().invoke(main, ["--instance", str(self.instance), *args], input=input)
        assert result.exit_code != 0, result.output
        return result.output

    def json(self, *args: str) -> dict:
        return json.loads(self(*args))

    def user_key(self, username: str, *, admin: bool = False, name: str = "") -> str:
        """Add a user and return a new API key for them."""
        self(
            "user",
            "add",
            username,
            "--name",
            name or username.title(),
            *(["--admin"] if admin else []),
        )
        return self("key", "create", username).strip()


#: The catalogs each test of an instance runs on: both, or the one DATAFLOW_TEST_DATABASE names.
BACKENDS = ("sqlite", "postgresql")
TEST_DATABASES = [
    name for name in BACKENDS if os.environ.get("DATAFLOW_TEST_DATABASE") in (None, "", name)
]


@pytest.fixture(params=TEST_DATABASES)
def instance(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh, initialised instance folder, its catalog on SQLite or on PostgreSQL
    (tests/postgres.py), as the test's parameter says."""
    path = tmp_path / "instance"
    if request.param == "postgresql":
        server = request.getfixturevalue("postgresql_server")
        url = server.create_database(template=request.getfixturevalue("postgresql_at_head"))
        path.mkdir()
        (path / "config.toml").write_text(f"database = {json.dumps(url)}\n")
    Cli(path)("init")
    return path


@contextmanager
def catalog(instance: Path) -> Iterator[Session]:
    """A session on the instance's catalog, whichever database holds it; commits at the end.

    For what no face offers: ageing a key, altering an audit row, counting every table's rows.
    """
    settings = load_settings(instance, extra=adapter_settings(discover_adapters()))
    engine = make_engine(Database.from_setting(instance, settings["database"]), 5000)
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    finally:
        engine.dispose()


@pytest.fixture
def cli(instance: Path) -> Cli:
    return Cli(instance)


@pytest.fixture(autouse=True)
def _runtimes_close(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every runtime a test builds (an app's, a command's, its own) gives its pooled connections
    back when the test ends: a PostgreSQL connection left to the garbage collector warns."""
    built: list[bootstrap.Runtime] = []
    build = bootstrap.build

    def build_and_keep(*args: Any, **kwargs: Any) -> bootstrap.Runtime:
        built.append(build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(bootstrap, "build", build_and_keep)
    yield
    for runtime in built:
        runtime.engine.dispose()


@pytest.fixture
def app(instance: Path) -> Flask:
    """The app on the test instance; transfers run inside the request that queues them."""
    return create_app({"queue_immediate": True}, instance_path=instance)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def key(cli: Cli) -> str:
    """An API key of user ``suhas`` (full name Suhas Somnath)."""
    return cli.user_key("suhas", name="Suhas Somnath")


@pytest.fixture
def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LiveServer:
    """A real gunicorn server started by ``dataflow-lite serve``."""

    url: str
    process: subprocess.Popen
    log: Path

    @property
    def api(self) -> str:
        return self.url + "/api/v1"


SERVER_START_SECONDS = 90


def start_server(
    instance: Path,
    log: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> LiveServer:
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "dataflow_lite",
        "--instance",
        str(instance),
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        *extra,
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    # Starting takes a few seconds, and many more on a machine busy with other test runs.
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()}")
        try:
            requests.get(server.api + "/openapi.json", timeout=1)
            return server
        except requests.RequestException:  # not listening yet, or still loading the app
            time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"the server did not answer in {SERVER_START_SECONDS} s: {log.read_text()}")


def stop_server(server: LiveServer) -> None:
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


def wait_for_transfers(api: str, key: str, dataset_id: int, seconds: float = 60) -> list[dict]:
    """Wait until every transfer of the dataset has ended (done or failed); return them."""
    deadline = time.monotonic() + seconds
    while True:
        transfers = requests.get(
            f"{api}/transfers",
            params={"dataset_id": dataset_id},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()
        if all(t["state"] in ("done", "failed") for t in transfers) or time.monotonic() > deadline:
            return transfers
        time.sleep(0.1)


@pytest.fixture
def live_server(instance: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """``dataflow-lite serve`` (gunicorn, two workers) on a free port of 127.0.0.1."""
    server = start_server(instance, tmp_path / "server.log")
    yield server
    stop_server(server)
