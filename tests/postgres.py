"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster, a free port.

``initdb`` refuses to run as root, so when the tests run as root the cluster belongs to the
``postgres`` account that Debian's package makes. It listens on 127.0.0.1 only, trusts
connections from there (nothing else can reach it), and is stopped and removed when the session
ends. Each test gets a database of its own (``postgresql_database``).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL = "apt-get install postgresql"
ROLE = "dataflow"


def _binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<n>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


@dataclass(frozen=True)
class PostgreSQL:
    """A running cluster: where it listens, and how to make databases on it."""

    port: int

    def url(self, name: str) -> str:
        """The URL of database ``name`` for the test role."""
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{name}"

    def create_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of database ``template``; its URL."""
        import psycopg

        name = f"test_{secrets.token_hex(4)}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={ROLE} dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Missing(Exception):
    """No PostgreSQL to run: what to install."""


@contextmanager
def cluster(keep: Path | None = None) -> Iterator[PostgreSQL]:
    """A throwaway cluster on a free port until the block ends; Missing if none can run.

    With ``keep``, the cluster lives in that folder and is only stopped at the end: a later
    block with the same folder starts it again (a bench's catalog, loaded once, asked twice).
    """
    binaries = _binaries()
    if binaries is None:
        raise Missing(f"PostgreSQL is not installed: {INSTALL}")
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Missing(f"no 'postgres' account to run PostgreSQL as: {INSTALL}") from None
    # Not under pytest's basetemp: its folders are private to root, and the cluster's owner
    # must reach its own.
    folder = keep or Path(tempfile.mkdtemp(prefix="dataflow-lite-postgresql-"))
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    as_owner = ["runuser", "-u", owner.pw_name, "--"] if owner is not None else []
    data, port = folder / "data", _free_port()
    run = dict(check=True, capture_output=True, text=True)
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            [*as_owner, str(binaries / "initdb"), "-D", str(data), "-U", ROLE, "-A", "trust",
             "-E", "UTF8", "--no-sync"], **run,
        )  # fmt: skip
    # fsync off: the cluster is thrown away; the tests check behaviour, not durability.
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    pg_ctl = [*as_owner, str(binaries / "pg_ctl"), "-D", str(data)]
    subprocess.run([*pg_ctl, "-o", options, "-l", str(folder / "log"), "-w", "start"], **run)
    try:
        yield PostgreSQL(port)
    finally:
        # A kept cluster stops cleanly, so that it starts again without recovery.
        mode = "fast" if keep else "immediate"
        subprocess.run([*pg_ctl, "-m", mode, "-w", "stop"], capture_output=True)
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgreSQL]:
    """A PostgreSQL cluster for the session (skips, naming the package, when none is installed)."""
    try:
        with cluster() as server:
            yield server
    except Missing as missing:
        pytest.skip(str(missing))


@pytest.fixture
def postgresql_database(postgresql_server: PostgreSQL) -> str:
    """The URL of a new, empty database on the session's PostgreSQL."""
    return postgresql_server.create_database()


@pytest.fixture(scope="session")
def postgresql_at_head(postgresql_server: PostgreSQL) -> str:
    """The name of a database migrated to the head revision, to copy: an instance's catalog
    starts from a copy in a tenth of a second rather than running every migration."""
    from dataflow_lite.store import schema
    from dataflow_lite.store.db import Database

    url = postgresql_server.create_database()
    schema.upgrade(Database.from_setting(Path("."), url))  # its engine is disposed: no user left
    return url.rsplit("/", 1)[1]
