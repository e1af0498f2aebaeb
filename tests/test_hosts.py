"""Several hosts on one catalog: the keys they must share, and a refusal when they differ."""

# The fixtures come from tests/postgres.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
from pathlib import Path

import pytest
import requests
from ordflow import API

from .conftest import Cli, start_server, stop_server, wait_for_transfers
from .postgres import postgresql_database, postgresql_server  # noqa: F401  (fixtures)

PASSWORD = "a long enough password"


def host(folder: Path, database: str, keys: Path | None = None) -> Cli:
    """An instance folder on the shared ``database``, with its keys in ``keys`` if given."""
    folder.mkdir()
    config = f"database = {json.dumps(database)}\nhost_name = {json.dumps(folder.name)}\n"
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
    assert (
        f"host {socket.gethostname()}" in refused
        and "copy local-folders.key, password.key, secret_key" in refused
    )

    # Copying the two files is all it takes.
    for name in ("secret_key", "password.key", "local-folders.key"):
        shutil.copy(first.instance / name, second.instance / name)
    second("user", "list")


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
