"""Several hosts on one catalog: the keys they must share, and a refusal when they differ."""

# The fixtures come from tests/postgres.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests
from ordflow import API

from dataflow_lite import bootstrap

from .conftest import Cli, LiveServer, start_server, stop_server, wait_for_transfers
from .postgres import postgresql_database, postgresql_server  # noqa: F401  (fixtures)
from .test_walkthrough import walkthrough

PASSWORD = "a long enough password"


def host(folder: Path, database: str, keys: Path | None = None, name: str = "") -> Cli:
    """An instance folder on the shared ``database``, with its keys in ``keys`` if given, named
    ``name`` (by default the folder's name)."""
    folder.mkdir()
    name = name or folder.name
    config = f"database = {json.dumps(database)}\nhost_name = {json.dumps(name)}\n"
    if keys is not None:
        config += f"keys_dir = {json.dumps(str(keys))}\n"
    (folder / "config.toml").write_text(config)
    return Cli(folder)


def test_a_host_with_other_keys_is_refused_naming_the_host_to_copy_them_from(tmp_path: Path):
    shared = str(tmp_path / "catalog.sqlite3")  # one catalog file, two instance folders
    first = host(tmp_path / "a", shared)
    first("init")
    second = host(tmp_path / "b", shared)
    refused = second.fails("user", "list")
    assert "are not the ones this catalog was first opened with" in refused
    assert "host a," in refused and "copy secret_key, password.key, local-folders.key" in refused

    # Copying the two files is all it takes.
    for name in ("secret_key", "password.key", "local-folders.key"):
        shutil.copy(first.instance / name, second.instance / name)
    second("user", "list")


def test_a_worker_under_the_name_of_a_live_host_stops_in_one_line(tmp_path: Path):
    shared = str(tmp_path / "catalog.sqlite3")
    first = host(tmp_path / "a", shared)
    first("init")
    bootstrap.build(first.instance).queue.sweep()  # host a's worker checks in
    twin = host(tmp_path / "twin", shared, keys=first.instance, name="a")
    [refused] = twin.fails("worker").strip().splitlines()
    place = re.escape(f"{socket.gethostname()}:{first.instance.resolve()}")
    assert re.fullmatch(
        f"Error: configuration error: host_name 'a' is taken: {place} checked in under it at "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; give each host its own host_name in its config.toml",
        refused,
    ), refused


@pytest.mark.server
def test_two_hosts_on_one_postgresql_accept_each_others_keys_and_passwords(
    postgresql_database: str, tmp_path: Path
):
    keys = tmp_path / "keys"  # one keys folder both hosts point at
    first = host(tmp_path / "a", postgresql_database, keys)
    first("init")
    second = host(tmp_path / "b", postgresql_database, keys)
    key = first.user_key("suhas", name="Suhas Somnath")
    first("user", "password", "suhas", input=PASSWORD + "\n")
    a = start_server(first.instance, tmp_path / "a.log")
    try:
        b = start_server(second.instance, tmp_path / "b.log")
        try:
            on_a, on_b = API("Bearer " + key, a.api), API("Bearer " + key, b.api)
            # An encrypted password made on one host activates an endpoint on the other.
            encrypted = requests.post(
                a.api + "/password-encryption",
                json={"password": "s3cret+/="},
                headers={"Authorization": "Bearer " + key},
                timeout=10,
            ).json()["encrypted_password"]
            assert on_b.globus_endpoints_activate(
                "syz", encrypted, encrypted=True, endpoint="destination"
            ) == {"status": "ok"}
            # A dataset made on one host takes files through the other.
            dataset = on_a.dataset_create("Across hosts", metadata={"Sample": "PZT"})
            data = tmp_path / "scan.bin"
            data.write_bytes(b"measured" * 1000)
            on_b.file_upload(str(data), dataset["id"])
            transfers = wait_for_transfers(b.api, key, dataset["id"])
            assert {t["state"] for t in transfers} == {"done"}, json.dumps(transfers)
            shown = on_a.dataset_info(dataset["id"])
            assert [f["name"] for f in shown["dataset_files"]] == ["scan.bin"]
            # A web session begun on one host is honoured by the other.
            web = requests.Session()
            page = web.get(a.url + "/login", timeout=10).text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
            login = {"username": "suhas", "password": PASSWORD, "csrf_token": token}
            answer = web.post(a.url + "/login", data=login, timeout=10, allow_redirects=False)
            assert answer.headers["Location"] == "/datasets"
            page_on_b = f"{b.url}/datasets/{dataset['id']}"
            elsewhere = web.get(page_on_b, timeout=10, allow_redirects=False)
            assert elsewhere.status_code == 200 and "Across hosts" in elsewhere.text
        finally:
            stop_server(b)
    finally:
        stop_server(a)
    landed = list((first.instance / "dataflow").rglob("scan.bin"))
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in landed] == [
        hashlib.sha256(data.read_bytes()).hexdigest()
    ]


FILES = 200
DATASETS = 4
#: One file in five is large enough that a kill finds its transfer running; the rest are small.
BIG, SMALL = 8 << 20, 64 << 10
ACTIVE = ("running", "verifying")


class Hosts:
    """Two ``serve`` hosts on one PostgreSQL; host b can be killed outright and started again."""

    def __init__(self, first: Cli, second: Cli, logs: Path) -> None:
        self.clis, self.logs, self.starts = (first, second), logs, 0
        #: A short lease, so a restarted host takes over its orphaned transfers within seconds.
        self.env = {"DATAFLOW_LITE_TRANSFER_LEASE_SECONDS": "3"}
        self.servers: list[LiveServer] = [self._start(cli) for cli in self.clis]
        self.port_b = int(self.servers[1].url.rsplit(":", 1)[1])

    def _start(self, cli: Cli, port: int | None = None) -> LiveServer:
        self.starts += 1
        log = self.logs / f"{cli.instance.name}-{self.starts}.log"
        return start_server(cli.instance, log, env=self.env, port=port)

    def kill_b(self) -> None:
        os.killpg(self.servers[1].process.pid, signal.SIGKILL)  # gunicorn, workers, queue worker
        self.servers[1].process.wait()

    def restart_b(self) -> None:
        self.servers[1] = self._start(self.clis[1], port=self.port_b)

    def stop(self) -> None:
        for server in self.servers:
            if server.process.poll() is None:
                stop_server(server)


def upload(urls: list[str], key: str, dataset_id: int, path: Path) -> str:
    """Upload ``path`` as a user would with two hosts: to the first URL, to the second when the
    first does not answer; a 409 after a cut means an earlier try landed. Which host took it."""
    for attempt in range(60):
        url = urls[attempt % 2]
        try:
            API("Bearer " + key, server_url=url).file_upload(str(path), dataset_id)
            return url
        except (requests.ConnectionError, ValueError) as error:
            close_what_ordflow_left_open(error)
            if isinstance(error, ValueError):
                if attempt and "already has" in str(error):
                    return url
                raise
            time.sleep(0.2)
    raise AssertionError(f"{path.name}: no host took it")


@pytest.mark.server
def test_two_hosts_take_the_walkthrough_and_200_files_across_a_kill_9_of_one(
    postgresql_database: str, tmp_path: Path
):
    keys = tmp_path / "keys"
    first = host(tmp_path / "a", postgresql_database, keys)
    first("init")
    second = host(tmp_path / "b", postgresql_database, keys)
    hosts = Hosts(first, second, tmp_path)
    try:
        a, b = (server.api for server in hosts.servers)
        walk = tmp_path / "walkthrough"
        walk.mkdir()
        walkthrough([a, b], first, first.instance, walk)  # every request to the other host
        key = first.user_key("pat")
        datasets = [
            API("Bearer " + key, server_url=url).dataset_create(f"run {n}")["id"]
            for n, url in zip(range(DATASETS), itertools.cycle([a, b]))
        ]
        sources = tmp_path / "sources"
        sources.mkdir()
        files = []
        for n in range(FILES):
            path = sources / f"frame_{n:03}.bin"
            path.write_bytes(os.urandom(BIG if n % 10 in (4, 5) else SMALL))  # to both hosts
            files.append((datasets[n % DATASETS], path))
        interrupted = kill_b_mid_transfer_while_uploading(hosts, postgresql_database, key, files)
        transfers = {
            dataset: wait_for_transfers(a, key, dataset, seconds=240) for dataset in datasets
        }
    finally:
        hosts.stop()

    every = [t for ended in transfers.values() for t in ended]
    assert {(t["state"], t["last_error"]) for t in every} == {("done", None)}, json.dumps(
        [t for t in every if t["state"] != "done"]
    )
    assert interrupted <= {t["id"] for t in every}
    with psycopg.connect(postgresql_database.replace("+psycopg", "")) as connection:
        counts = connection.execute(
            "SELECT (SELECT count(*) FROM datasetfile f JOIN dataset d ON d.id = f.dataset_id"
            "         WHERE d.name LIKE 'run %' AND NOT f.is_directory),"
            " (SELECT count(*) FROM (SELECT 1 FROM datasetfile"
            "         GROUP BY dataset_id, relative_path, name HAVING count(*) > 1) twice),"
            " (SELECT count(*) FROM (SELECT 1 FROM transfer WHERE kind = 'file'"
            "         GROUP BY file_id HAVING count(*) > 1) twice),"
            " (SELECT count(*) FROM transfer WHERE state <> 'done')"
        ).fetchone()
    assert counts == (FILES, 0, 0, 0)
    destination = first.instance / "dataflow"
    for n, dataset in enumerate(datasets):
        [folder] = destination.glob(f"*/*/*_run_{n}")
        expected = {path.name: path for owner, path in files if owner == dataset}
        landed = {p.name for p in folder.iterdir()} - {"metadata.json", ".dataflow-lite"}
        assert landed == set(expected), "each file exactly once, and nothing else"
        for name, path in expected.items():
            assert sha256(folder / name) == sha256(path), name
        document = json.loads((folder / "metadata.json").read_text())
        assert sorted(f["path"] for f in document["files"]) == sorted(expected)
    for cli in (first, second):
        assert list((cli.instance / "staging").iterdir()) == [], "staged copies all removed"


def kill_b_mid_transfer_while_uploading(
    hosts: Hosts, database: str, key: str, files: list[tuple[int, Path]]
) -> set[int]:
    """Upload the files from four threads, alternating between the hosts; once a third are in
    and one of host b's transfers is running, kill host b and start it again. The transfers the
    kill cut short."""
    a, b = (server.api for server in hosts.servers)
    running = "SELECT id FROM transfer WHERE staged_on = 'b' AND state IN ('running', 'verifying')"
    interrupted: set[int] = set()
    with (
        ThreadPoolExecutor(4) as pool,
        psycopg.connect(database.replace("+psycopg", ""), autocommit=True) as connection,
    ):
        futures = [
            pool.submit(upload, [a, b] if n % 2 else [b, a], key, dataset, path)
            for n, (dataset, path) in enumerate(files)
        ]
        while not interrupted:
            assert not all(f.done() for f in futures), "host b never ran a transfer to cut"
            if (
                sum(f.done() for f in futures) >= len(files) // 3
                and connection.execute(running).fetchall()
            ):
                hosts.kill_b()
                # Rows still running now were cut short: nothing is left to finish them.
                interrupted = {row[0] for row in connection.execute(running)}
                time.sleep(1)  # the uploads meanwhile go to host a
                hosts.restart_b()
            time.sleep(0.002)
        took = [future.result() for future in futures]
    assert {b, a} == set(took), "files went to both hosts"
    return interrupted


def close_what_ordflow_left_open(error: BaseException) -> None:
    """ordflow 0.0.2 closes the file it uploads only when its request succeeds."""
    frame = error.__traceback__
    while frame is not None:
        handle = frame.tb_frame.f_locals.get("file_handle")
        if handle is not None:
            handle.close()
        frame = frame.tb_next


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
