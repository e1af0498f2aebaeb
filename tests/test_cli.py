"""The dataflow-lite command."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from ordflow import API
from sqlmodel import Session, select

from dataflow_lite import bootstrap
from dataflow_lite.adapter import Option, TransferAdapter, discover_adapters
from dataflow_lite.app import served_app
from dataflow_lite.bootstrap import Runtime
from dataflow_lite.cli import main
from dataflow_lite.cli.serve import gunicorn_command
from dataflow_lite.services.datasets import create_dataset
from dataflow_lite.services.endpoints import list_endpoints
from dataflow_lite.services.identity import Identity, system
from dataflow_lite.services.user_settings import get_settings
from dataflow_lite.services.users import authenticate
from dataflow_lite.store import api_keys
from dataflow_lite.store.models import Dataset, User

from .conftest import SERVER_START_SECONDS, free_port


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
    command = gunicorn_command("127.0.0.1:9", 3, 45)
    assert command[command.index("--workers") + 1] == "3"
    assert command[command.index("--timeout") + 1] == "45"
    assert command[-1] == "wsgi:app"
    assert "%(U)s" in command[command.index("--access-logformat") + 1]  # the path, never the query


def test_the_served_app_leaves_what_it_holds_out_of_the_collectors_walks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DATAFLOW_LITE_INSTANCE", str(tmp_path / "instance"))
    before = gc.get_freeze_count()
    try:
        app = served_app()
        assert gc.get_freeze_count() > before
        assert app.test_client().get("/api/v1/openapi.json").status_code == 200
    finally:
        gc.unfreeze()


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
            # As for any server the tests start: many seconds on a busy machine (quickstart also
            # makes the instance, and hashes the password at full cost).
            deadline = time.monotonic() + SERVER_START_SECONDS
            while "Listening at" not in (printed := (tmp_path / "quickstart.log").read_text()):
                assert process.poll() is None and time.monotonic() < deadline, printed
                time.sleep(0.1)
            key = re.search(r"API key for 'scientist': (\S+)", printed)[1]
            password = re.search(r"Web login: scientist / (\S+)", printed)[1]
            api = API(key, server_url=f"http://127.0.0.1:{port}/api/v1")
            assert api.settings_get()["transport"] == {"protocol": "local"}
            # The printed first try runs as it is (ordflow is installed here already).
            tried = re.search(r"^Try: (.+)$", printed, re.MULTILINE)[1]
            ran = subprocess.run(tried, shell=True, capture_output=True, text=True, timeout=120)
            assert ran.returncode == 0 and "'protocol': 'local'" in ran.stdout, ran.stderr
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


def test_serving_on_a_port_in_use_is_one_line_and_issues_no_key(cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        for command in ("serve", "quickstart"):
            line = refused(cli, command, "--bind", bind)
            assert line.startswith(f"Error: cannot listen on {bind}: ") and "--bind" in line
    assert "scientist" not in cli("user", "list")  # quickstart stopped before its user and key


def test_a_reader_that_goes_away_stops_a_command_without_a_word(cli):
    cli("user", "add", "ada")
    read, write = os.pipe()
    os.close(read)  # as `| head` does once it has its lines
    command = [sys.executable, "-m", "dataflow_lite", "--instance", str(cli.instance)]
    try:
        done = subprocess.run([*command, "user", "list"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
    finally:
        os.close(write)
    assert done.returncode == 1 and done.stderr == ""


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


def refused(cli, *args: str) -> str:
    """Run a command a service refuses: exit status 1, one line on stderr, no traceback."""
    result = CliRunner().invoke(main, ["--instance", str(cli.instance), *args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ")
    return line


@contextmanager
def services_on(instance: Path) -> Iterator[Runtime]:
    """The runtime of the test instance, for checking what a command did through the services."""
    rt = bootstrap.build(instance)
    try:
        yield rt
    finally:
        rt.engine.dispose()


def as_user(rt: Runtime, username: str) -> Identity:
    with Session(rt.engine) as session:
        user = session.exec(select(User).where(User.username == username)).one()
    return Identity(user, "test")


def test_keys_are_listed_and_revoked_through_the_services(cli, instance: Path):
    key = cli.user_key("ada")
    cli("key", "revoke", key)
    assert '"revoked_at": null' not in cli("key", "list", "ada")
    with services_on(instance) as rt, pytest.raises(api_keys.KeyRejected, match="revoked"):
        authenticate(rt, key, None)
    assert refused(cli, "key", "revoke", "99999999999999999999999") == "Error: no such API key"


def test_endpoint_add_default_makes_the_new_endpoint_the_destination(cli, instance, tmp_path):
    cli("user", "add", "ada")
    archive = cli.json(
        "endpoint", "add", "archive", "--type", "local", "--path", str(tmp_path / "a"), "--default"
    )
    assert archive["is_default"]
    listed = [json.loads(doc) for doc in re.split(r"(?m)^(?=\{)", cli("endpoint", "list")) if doc]
    assert [e["name"] for e in listed if e["is_default"]] == ["archive"]
    with services_on(instance) as rt:
        ada = as_user(rt, "ada")
        assert get_settings(rt, ada)["globus"]["destination_endpoint"] == archive["id"]
        dataset = create_dataset(rt, ada, "scan 1", None, [])
        with Session(rt.engine) as session:
            assert session.get(Dataset, dataset["id"]).endpoint_id == archive["id"]


def test_refusals_are_one_line_and_exit_1(cli, tmp_path: Path):
    ident = str(cli.json("instrument", "add", "Cypher")["id"])
    cli("instrument", "field", ident, "Mode")
    assert refused(cli, "instrument", "field", ident, "Mode") == (
        "Error: Cypher has a field 'Mode' already"
    )
    assert "no instrument" in refused(cli, "instrument", "field", "99999999999999999999999", "x")
    assert "not found" in refused(cli, "transfers", "retry", "99999999999999999999999")
    assert cli("transfers", "list", "--dataset", "99999999999999999999999") == ""
    assert "not a number" in refused(
        cli, "instrument", "field", ident, "T", "--type", "number", "--choice", "3x"
    )
    assert "exists already" in refused(cli, "instrument", "add", "Cypher")
    assert refused(cli, "key", "create", "nobody").startswith("Error: no user 'nobody'")


def test_an_endpoint_holding_datasets_is_not_removed(cli, instance: Path, tmp_path: Path):
    cli("user", "add", "ada")
    with services_on(instance) as rt:
        create_dataset(rt, as_user(rt, "ada"), "scan 1", None, [])
    assert refused(cli, "endpoint", "remove", "local") == (
        "Error: endpoint local holds 1 dataset(s): they stay registered there"
    )
    cli("endpoint", "add", "spare", "--type", "local", "--path", str(tmp_path / "spare"))
    cli("endpoint", "remove", "spare")
    assert '"spare"' not in cli("endpoint", "list")
    assert refused(cli, "endpoint", "remove", "spare") == "Error: no endpoint named 'spare'"


def test_endpoint_add_offers_the_options_the_adapters_declare(cli):
    shown = cli("endpoint", "add", "--help")
    assert "--key-file" in shown and "--known-hosts" in shown and "--collection" in shown
    assert "sftp: a private key" in " ".join(shown.split())
    globus = cli.json(
        "endpoint", "add", "beamline", "--type", "globus",
        "--id", "57230a10-7ba2-11e7-8c3b-22000b9923ef", "--path", "/data",
    )  # fmt: skip
    assert globus["id"] == globus["options"]["collection"] == "57230a10-7ba2-11e7-8c3b-22000b9923ef"
    result = CliRunner().invoke(
        main, ["--instance", str(cli.instance), "endpoint", "add", "x", "--type", "local",
               "--path", "/d", "--host", "h"],
    )  # fmt: skip
    assert result.exit_code == 2 and "a local endpoint does not take --host" in result.stderr


class BucketAdapter(TransferAdapter):
    """An adapter installed after the core was written: only its options matter here."""

    name = "bucket"
    options = (
        Option("bucket", "the bucket that receives the datasets"),
        Option("access_token", "the token that writes there", required=False, secret=True),
    )
    activation = activate = check = submit = status = verify = cancel = None  # type: ignore
    write_file = locate = None  # type: ignore


def test_an_adapter_installed_later_brings_its_flags(cli, instance: Path, monkeypatch):
    monkeypatch.setattr(
        bootstrap, "discover_adapters", lambda: {**discover_adapters(), "bucket": BucketAdapter}
    )
    assert "--access-token" in cli("endpoint", "add", "--help")
    shown = cli.json(
        "endpoint", "add", "store", "--type", "bucket", "--bucket", "raw", "--access-token", "t0k"
    )
    assert shown["options"] == {"bucket": "raw", "access_token": "********"}
    assert "needs --bucket" in refused(cli, "endpoint", "add", "other", "--type", "bucket")
    with services_on(instance) as rt:
        (stored,) = [e for e in list_endpoints(rt, system()) if e.name == "store"]
    assert stored.options == {"bucket": "raw", "access_token": "t0k"}
