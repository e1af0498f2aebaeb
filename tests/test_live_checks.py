"""Live checks of endpoints: bounded in time, remembered, refreshed in the background; a host
that accepts connections and never answers stalls no page and no API call."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dataflow_lite import create_app
from dataflow_lite.adapter import Credentials
from dataflow_lite.live_checks import LiveChecks
from dataflow_lite.services import users
from dataflow_lite.services.identity import system
from dataflow_lite.store import credentials
from dataflow_lite.store.db import unit_of_work

from .test_web import add_user, log_in, text_of


def test_a_first_check_is_waited_for_at_most_the_timeout_then_remembered():
    release = threading.Event()
    calls = []

    def slow() -> str:
        calls.append(1)
        release.wait(60)  # still in flight at the second ask, however late that comes
        return "answered"

    # A timeout long enough that waiting for it, or not, tells apart on a busy machine too.
    live = LiveChecks(max_age=60, timeout=1)
    started = time.monotonic()
    first = live.ask("k", slow, lambda: "pending")
    assert (first.value, first.age) == ("pending", None)
    assert time.monotonic() - started < 2
    started = time.monotonic()
    assert live.ask("k", slow, lambda: "pending").value == "pending"
    assert time.monotonic() - started < 0.5  # a check in flight: nobody else waits for it
    assert len(calls) == 1  # one check in flight, not one per caller
    release.set()
    deadline = time.monotonic() + 60
    while live.ask("k", slow, lambda: "pending").value != "answered":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(calls) == 1


def test_an_old_answer_is_given_at_once_while_it_is_asked_again():
    answers = iter(["first", "second"])
    gate = threading.Event()

    def check() -> str:
        value = next(answers)
        if value == "second":
            gate.wait(5)
        return value

    live = LiveChecks(max_age=0.1, timeout=5)
    assert live.ask("k", check, lambda: "pending").value == "first"
    time.sleep(0.2)
    started = time.monotonic()
    old = live.ask("k", check, lambda: "pending")
    assert old.value == "first" and old.age is not None and old.age >= 0.1
    assert time.monotonic() - started < 0.5  # not waiting for the slow refresh
    gate.set()
    deadline = time.monotonic() + 60
    while live.ask("k", check, lambda: "pending").value != "second":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # New credentials are a new key: the next call checks anew, and waits for it.
    assert live.ask(("k", "new"), lambda: "third", lambda: "pending").value == "third"


@pytest.fixture
def dead_host() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        stop.set()
        thread.join()
        for connection in held:
            connection.close()


def test_a_host_that_never_answers_stalls_neither_the_api_nor_the_account_page(
    cli, instance, dead_host
):
    endpoint = cli.json(
        "endpoint", "add", "silent", "--type", "sftp", "--host", "127.0.0.1",
        "--port", str(dead_host), "--username", "lab", "--path", "/data",
    )  # fmt: skip
    # The host's key is known: the login would go on to the SSH banner, which never comes.
    public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    )
    (instance / "known_hosts").write_text(f"[127.0.0.1]:{dead_host} {public.decode()}\n")
    add_user(cli, "ada")
    key = cli("key", "create", "ada").strip()
    app = create_app({"live_check_timeout_seconds": 1}, instance_path=instance)
    rt = app.extensions["dataflow_lite.runtime"]
    (ada,) = users.list_users(rt, system())
    with unit_of_work(rt.engine, audited=False) as work:  # as an earlier activation left them
        credentials.store(work.session, rt.cipher, ada.id, endpoint["id"], Credentials("lab", "pw"))
    api = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    started = time.monotonic()
    answer = api.get(
        "/api/v1/transports/globus/activation", query_string={"endpoint": endpoint["id"]},
        headers=auth,
    )  # fmt: skip
    assert time.monotonic() - started < 3, "the API waited for the silent host"
    assert answer.status_code == 200
    status = answer.json["destination_activation"]
    assert status["code"] == "AutoActivationFailed"
    assert "silent has not answered within 1 s" in status["message"]

    page = app.test_client()
    assert log_in(page, "ada").status_code == 302
    started = time.monotonic()
    account = page.get("/account")
    assert time.monotonic() - started < 3, "the account page waited for the silent host"
    assert "silent has not answered within 1 s" in text_of(account)


def test_new_credentials_are_seen_at_once_by_every_server_process(instance, cli, monkeypatch):
    """Two server processes (two runtimes on one instance): activating through one is seen by
    the other at once, though its answer for the old credentials is still fresh."""
    from dataflow_lite_local import LocalAdapter

    from dataflow_lite import bootstrap
    from dataflow_lite.adapter import ACTIVATION_FAILED, ALREADY_ACTIVATED, Activation
    from dataflow_lite.services import activation
    from dataflow_lite.services.identity import Identity

    # The local folder stands in for a host that needs a login (what sftp asks).
    def needs_login(self, kept):
        return Activation(ALREADY_ACTIVATED if kept else ACTIVATION_FAILED, "log in first")

    monkeypatch.setattr(LocalAdapter, "activation", needs_login)
    monkeypatch.setattr(LocalAdapter, "activate", lambda self, user, pw: Credentials(user, pw))
    cli("user", "add", "ada")
    one, other = (bootstrap.build(instance, {"live_check_max_age_seconds": 3600}) for _ in "12")
    ada = Identity(users.list_users(one, system())[0], "api-key 1")
    for rt in (one, other):
        assert activation.activation_status(rt, ada, None).code == ACTIVATION_FAILED
    activation.activate(one, ada, None, "ada", password="pw")
    for rt in (other, one):
        assert activation.activation_status(rt, ada, None).code == ALREADY_ACTIVATED
