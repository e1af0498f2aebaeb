"""The dataflow-lite command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from ordflow import API

from dataflow_lite.adapter import discover_adapters
from dataflow_lite.cli.base import _gunicorn_command

from .conftest import free_port


def test_init_is_idempotent(cli, instance: Path):
    cli("init")
    endpoints = [line for line in cli("endpoint", "list").splitlines() if line.startswith("{")]
    assert len(endpoints) == 1
    assert (instance / "dataflow").is_dir()


def test_users_keys_and_revocation(cli, client):
    key = cli.user_key("ada", name="Ada Lovelace")
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/user-settings", headers=headers).status_code == 200
    listed = cli("key", "list", "ada")
    assert '"revoked_at": null' in listed and "secret" not in listed
    cli("key", "revoke", key)
    response = client.get("/api/v1/user-settings", headers=headers)
    assert response.status_code == 401
    assert response.json["message"] == "the API key has been revoked"
    assert "exists already" in cli.fails("user", "add", "ada")
    assert "no user 'bob'" in cli.fails("key", "create", "bob")


def test_instrument_and_endpoint_commands_print_json(cli, tmp_path: Path):
    instrument = cli.json("instrument", "add", "Cypher", "--description", "AFM in JG 55")
    assert (instrument["name"], instrument["description"]) == ("Cypher", "AFM in JG 55")
    field = cli.json(
        "instrument",
        "field",
        str(instrument["id"]),
        "Mode",
        "--choice",
        "AC",
        "--choice",
        "contact",
    )
    assert field["choices"] == ["AC", "contact"]
    endpoint = cli.json(
        "endpoint",
        "add",
        "archive",
        "--type",
        "local",
        "--path",
        str(tmp_path / "a"),
        "--id",
        "57230a10-7ba2-11e7-8c3b-22000b9923ef",
    )
    assert endpoint["id"] == "57230a10-7ba2-11e7-8c3b-22000b9923ef"
    assert endpoint["options"] == {"path": str(tmp_path / "a")}


def test_endpoint_mistakes_are_refused(cli, tmp_path: Path):
    installed = ", ".join(sorted(discover_adapters()))
    assert f"adapter 'ftp' is not installed; installed: {installed}" in cli.fails(
        "endpoint", "add", "x", "--type", "ftp", "--path", str(tmp_path)
    )
    assert "needs --path" in cli.fails("endpoint", "add", "x", "--type", "local")
    assert "not a UUID" in cli.fails(
        "endpoint", "add", "x", "--type", "local", "--path", "/d", "--id", "nope"
    )


def test_module_entry_point_and_serve_command(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "dataflow_lite", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "serve" in result.stdout
    command = _gunicorn_command("127.0.0.1:9", 3, 45)
    assert command[command.index("--workers") + 1] == "3"
    assert command[command.index("--timeout") + 1] == "45"
    assert command[-1] == "wsgi:app"
    assert "%(U)s" in command[command.index("--access-logformat") + 1]  # the path, never the query


@pytest.mark.server
def test_quickstart_prints_a_working_url_key_and_password(tmp_path: Path):
    port = free_port()
    with (tmp_path / "quickstart.log").open("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dataflow_lite", "--instance", str(tmp_path / "instance"),
             "quickstart", "--bind", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while "Listening at" not in (printed := (tmp_path / "quickstart.log").read_text()):
                assert process.poll() is None and time.monotonic() < deadline, printed
                time.sleep(0.1)
            key = re.search(r"API key for 'scientist': (\S+)", printed)[1]
            password = re.search(r"Web login: scientist / (\S+)", printed)[1]
            api = API(key, server_url=f"http://127.0.0.1:{port}/api/v1")
            assert api.settings_get()["transport"] == {"protocol": "local"}
            web = requests.Session()
            token = re.search(r'name="csrf_token" value="([^"]+)"', web.get(
                f"http://127.0.0.1:{port}/login", timeout=10).text)[1]  # fmt: skip
            answer = web.post(
                f"http://127.0.0.1:{port}/login",
                data={"username": "scientist", "password": password, "csrf_token": token},
                timeout=10,
            )
            assert answer.url.endswith("/datasets") and "scientist" in answer.text
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(15)


def test_user_password_sets_a_web_login(cli, client):
    cli("user", "add", "ada")
    assert "at least" in cli.fails_with_input("user", "password", "ada", input="short\n")
    cli("user", "password", "ada", input="a long enough password\n")
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    answer = client.post(
        "/login",
        data={"username": "ada", "password": "a long enough password", "csrf_token": token},
    )
    assert answer.headers["Location"] == "/datasets"
