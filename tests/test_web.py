"""The web pages through Flask's test client: logins, CSRF, keys, admin pages, the wizard."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
from pathlib import Path

import argon2
import pytest

from dataflow_lite.faces import RUNTIME
from dataflow_lite.services import endpoints, logins, users
from dataflow_lite.services.identity import system

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def text_of(response) -> str:
    """The page's text as a person reads it: tags dropped, entities decoded, spaces collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", response.text, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def token(client, path: str = "/login") -> str:
    """The CSRF token of a form on ``path``."""
    match = TOKEN.search(client.get(path).text)
    assert match, f"no form with a CSRF token on {path}"
    return match.group(1)


def add_user(cli, username: str, *, admin: bool = False, password: str = PASSWORD) -> None:
    cli("user", "add", username, "--name", username.title(), "--password-stdin",
        *(["--admin"] if admin else []), input=password + "\n")  # fmt: skip


def log_in(client, username: str, password: str = PASSWORD):
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token(client)},
    )


@pytest.fixture
def ada(cli, client):
    """User ``ada``, logged in with the test client."""
    add_user(cli, "ada")
    assert log_in(client, "ada").status_code == 302
    return client


@pytest.fixture
def admin(cli, client):
    """Admin ``root``, logged in with the test client."""
    add_user(cli, "root", admin=True)
    assert log_in(client, "root").status_code == 302
    return client


@pytest.fixture
def cypher(cli) -> int:
    """An instrument: a required persisting number, a choice, an integer, a persisting text."""
    ident = str(cli.json("instrument", "add", "Cypher")["id"])
    cli("instrument", "field", ident, "Temperature", "--type", "number", "--required",
        "--unit", "K", "--persist")  # fmt: skip
    cli("instrument", "field", ident, "Mode", "--choice", "AC", "--choice", "contact")
    cli("instrument", "field", ident, "Scans", "--type", "integer")
    cli("instrument", "field", ident, "Operator", "--persist")
    return int(ident)


# Logging in ----------------------------------------------------------------------------------


def test_pages_send_visitors_to_the_login_page_and_back(cli, client):
    add_user(cli, "ada")
    response = client.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/account")
    response = client.post(
        "/login",
        data={
            "username": "ada",
            "password": PASSWORD,
            "next": "/account",
            "csrf_token": token(client),
        },
    )
    assert response.headers["Location"] == "/account"
    assert "Signed in as ada" in text_of(client.get("/account"))


def test_a_login_never_redirects_elsewhere(cli, client):
    add_user(cli, "ada")
    data = {"username": "ada", "password": PASSWORD, "next": "//evil.example/x"}
    response = client.post("/login", data={**data, "csrf_token": token(client)})
    assert response.headers["Location"] == "/datasets"


def test_a_wrong_password_is_refused(cli, client):
    add_user(cli, "ada")
    response = log_in(client, "ada", "wrong password")
    assert response.status_code == 400
    assert "Wrong username or password." in text_of(response)
    assert client.get("/datasets").status_code == 302  # still not logged in


def test_an_unknown_user_gets_the_same_answer(client):
    response = log_in(client, "nobody")
    assert (response.status_code, "Wrong username or password." in text_of(response)) == (400, True)


def test_failed_logins_are_rate_limited_per_username_and_address(cli, client):
    add_user(cli, "ada")
    add_user(cli, "bob")
    for _ in range(5):
        assert log_in(client, "ada", "guess").status_code == 400
    response = log_in(client, "ada")  # even the right password, now
    assert response.status_code == 429
    assert "Too many failed logins: try again in 15 minutes." in text_of(response)
    assert int(response.headers["Retry-After"]) > 800
    assert log_in(client, "bob").status_code == 302  # others may still log in


def test_guesses_at_made_up_names_never_lock_out_a_real_user_of_the_address(cli, client):
    add_user(cli, "ada")
    for attempt in range(20):
        assert log_in(client, f"user{attempt}", "guess").status_code == 400
    response = log_in(client, "user20", "guess")  # the address is over its count now
    assert response.status_code == 429
    assert "Too many failed logins" in text_of(response)
    assert log_in(client, "ada", "guess").status_code == 429  # the same answer for any name
    assert log_in(client, "ada").status_code == 302  # but the right password still logs in


def test_guesses_at_a_real_account_are_throttled_per_account(cli, client):
    add_user(cli, "ada")
    for attempt in range(3):
        assert log_in(client, f"user{attempt}", "guess").status_code == 400
    for _ in range(5):
        assert log_in(client, "ada", "guess").status_code == 400
    assert log_in(client, "ada").status_code == 429  # the account, not the address


def test_a_deactivated_user_cannot_log_in_and_is_logged_out(cli, app, admin):
    add_user(cli, "ada")
    other = app.test_client()
    assert log_in(other, "ada").status_code == 302
    page = admin.get("/admin/users")
    ada_id = re.search(r'/admin/users/(\d+)/deactivate"', page.text).group(1)
    response = admin.post(
        f"/admin/users/{ada_id}/deactivate", data={"csrf_token": token(admin, "/admin/users")}
    )
    assert "ada is deactivated." in text_of(admin.get(response.headers["Location"]))
    assert other.get("/datasets").status_code == 302  # her session has ended
    response = log_in(other, "ada")
    assert response.status_code == 403
    assert "This account is deactivated: ask an administrator." in text_of(response)


def test_a_new_password_ends_older_sessions(cli, app):
    add_user(cli, "ada")
    before = app.test_client()
    assert log_in(before, "ada").status_code == 302
    assert before.get("/datasets").status_code == 200
    cli("user", "password", "ada", input="a brand new password\n")
    assert before.get("/datasets").status_code == 302  # sent back to log in
    after = app.test_client()
    assert log_in(after, "ada", "a brand new password").status_code == 302
    assert after.get("/datasets").status_code == 200


def test_a_login_that_rehashes_the_password_keeps_its_session(cli, client, monkeypatch):
    """A hash made with older argon2 parameters is replaced at login; the session holds."""
    add_user(cli, "ada")  # hashed with the tests' cheap parameters
    stronger = argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    monkeypatch.setattr(logins, "_hasher", stronger)
    assert log_in(client, "ada").status_code == 302
    assert client.get("/datasets").status_code == 200
    (ada,) = users.list_users(client.application.extensions["dataflow_lite.runtime"], system())
    assert not stronger.check_needs_rehash(ada.password_hash)


def test_logging_out_ends_the_session(ada):
    response = ada.post("/logout", data={"csrf_token": token(ada, "/datasets")})
    assert "You are logged out." in text_of(ada.get(response.headers["Location"]))
    assert ada.get("/datasets").status_code == 302


def copy_of_session(app, client):
    """A second client carrying the same session cookie (a cookie copied elsewhere)."""
    other = app.test_client()
    cookie = client.get_cookie("dataflow_lite_session")
    assert cookie is not None
    other.set_cookie("dataflow_lite_session", cookie.value)
    return other


def test_logging_out_ends_the_session_on_the_server(app, ada):
    copied = copy_of_session(app, ada)
    assert copied.get("/datasets").status_code == 200
    ada.post("/logout", data={"csrf_token": token(ada, "/datasets")})
    assert copied.get("/datasets").status_code == 302  # the copied cookie no longer works
    assert copied.get("/api/v1/user-settings").status_code == 401
    assert log_in(ada, "ada").status_code == 302  # logging in again starts a new session
    assert ada.get("/datasets").status_code == 200
    assert copied.get("/datasets").status_code == 302


def test_a_new_password_ends_a_copied_session(cli, app, ada):
    copied = copy_of_session(app, ada)
    cli("user", "password", "ada", input="a brand new password\n")
    assert copied.get("/datasets").status_code == 302
    assert ada.get("/datasets").status_code == 302


def test_an_admin_adds_a_user_who_can_log_in(app, admin):
    form = {"username": "grace", "name": "Grace Hopper", "password": "cobol-1959"}
    response = admin.post("/admin/users", data={**form, "csrf_token": token(admin, "/admin/users")})
    assert "User grace is added." in text_of(admin.get(response.headers["Location"]))
    other = app.test_client()
    assert log_in(other, "grace", "cobol-1959").status_code == 302
    assert "Grace Hopper" in text_of(other.get("/datasets"))


def test_a_short_password_is_refused(admin):
    form = {"username": "grace", "password": "short", "csrf_token": token(admin, "/admin/users")}
    response = admin.post("/admin/users", data=form)
    assert response.status_code == 400
    assert "the password must be at least 8 characters long" in text_of(response)


# CSRF ----------------------------------------------------------------------------------------


def test_a_form_without_its_csrf_token_is_refused(ada):
    response = ada.post("/account/keys", data={"name": "laptop"})
    assert response.status_code == 400
    assert "The CSRF token is missing." in text_of(response)
    assert "You have no API key yet." in text_of(ada.get("/account"))


def test_a_login_form_without_its_csrf_token_is_refused(cli, client):
    add_user(cli, "ada")
    response = client.post("/login", data={"username": "ada", "password": PASSWORD})
    assert response.status_code == 400
    assert "The CSRF token is missing." in text_of(response)


def test_the_api_takes_the_session_only_with_its_csrf_token_in_a_header(ada):
    assert ada.get("/api/v1/user-settings").status_code == 401  # the cookie alone is not enough
    refused = ada.get("/api/v1/user-settings", headers={"X-CSRFToken": "forged"})
    assert refused.status_code == 401
    assert "CSRF token was refused" in refused.json["message"]
    page_token = META_TOKEN.search(ada.get("/datasets").text).group(1)
    response = ada.get("/api/v1/user-settings", headers={"X-CSRFToken": page_token})
    assert response.status_code == 200
    assert response.json["transport"] == {"protocol": "local"}


# My account ----------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_works_on_the_api(ada):
    response = ada.post(
        "/account/keys",
        data={"name": "notebook", "csrf_token": token(ada, "/account")},
        follow_redirects=True,
    )
    assert "Copy it now: it will not be shown again." in text_of(response)
    key = re.search(r'id="new-key" class="mono" readonly value="([^"]+)"', response.text).group(1)
    api = ada.application.test_client()
    settings = api.get("/api/v1/user-settings", headers={"Authorization": f"Bearer {key}"})
    assert settings.status_code == 200
    page = ada.get("/account")
    assert key not in page.text
    assert "notebook" in text_of(page)


def test_a_revoked_key_stops_working(ada):
    response = ada.post(
        "/account/keys", data={"csrf_token": token(ada, "/account")}, follow_redirects=True
    )
    key = re.search(r'id="new-key" class="mono" readonly value="([^"]+)"', response.text).group(1)
    key_id = re.search(r"/account/keys/(\d+)/revoke", response.text).group(1)
    ada.post(f"/account/keys/{key_id}/revoke", data={"csrf_token": token(ada, "/account")})
    assert "revoked" in text_of(ada.get("/account"))
    refused = ada.get("/api/v1/user-settings", headers={"Authorization": f"Bearer {key}"})
    assert refused.json["message"] == "the API key has been revoked"


def test_password_encryption_matches_the_api(ada, cli):
    response = ada.post(
        "/account/password-encryption",
        data={"password": "p&ss#word", "csrf_token": token(ada, "/account")},
    )
    encrypted = re.search(r'id="encrypted-password" class="mono" readonly value="([^"]+)"',
                          response.text).group(1)  # fmt: skip
    key = cli("key", "create", "ada").strip()
    activated = ada.application.test_client().post(
        f"/api/v1/transports/globus/activate?encrypted_password={encrypted}",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert activated.json == {"status": "ok"}


def test_the_destination_is_chosen_from_the_endpoints(ada, cli, tmp_path):
    path = tmp_path / "archive"
    archive = cli.json("endpoint", "add", "archive", "--type", "local", "--path", str(path))
    page = text_of(ada.get("/account"))
    assert "New datasets go to local (local)." in page
    assert "archive" in page
    response = ada.post(
        "/account/destination",
        data={"endpoint": archive["id"], "csrf_token": token(ada, "/account")},
    )
    assert "New datasets go to archive." in text_of(ada.get(response.headers["Location"]))


def test_activation_is_offered_only_where_the_adapter_takes_a_login(ada, cli, tmp_path):
    gone = tmp_path / "unmounted"
    nas = cli.json("endpoint", "add", "nas", "--type", "local", "--path", str(gone))
    cluster = cli.json("endpoint", "add", "cluster", "--type", "sftp", "--host", "127.0.0.1",
                       "--port", "1", "--username", "dataflow", "--path", "/data")  # fmt: skip
    page = ada.get("/account")
    shown = text_of(page)
    assert f"{gone} does not exist or is not a directory" in shown
    assert "It takes no login: an administrator must fix what the status says." in shown
    assert f"/account/endpoints/{nas['id']}/activate" not in page.text  # no form that cannot help
    assert f"/account/endpoints/{cluster['id']}/activate" in page.text
    response = ada.post(
        f"/account/endpoints/{cluster['id']}/activate",
        data={"username": "x", "password": "y", "csrf_token": token(ada, "/account")},
    )
    assert "cluster refused activation" in text_of(ada.get(response.headers["Location"]))


# Admin pages ---------------------------------------------------------------------------------


ADMIN_PAGES = [
    "/admin",
    "/admin/users",
    "/admin/instruments",
    "/admin/endpoints",
    "/admin/transfers",
]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_refuse_non_admins(ada, path):
    response = ada.get(path)
    assert response.status_code == 403
    assert "This page is for administrators only." in text_of(response)


def test_admin_actions_refuse_non_admins(ada, cli, app):
    add_user(cli, "bob")
    response = ada.post("/admin/users/2/make-admin", data={"csrf_token": token(ada, "/datasets")})
    assert response.status_code == 403
    bob = app.test_client()
    log_in(bob, "bob")
    assert bob.get("/admin/users").status_code == 403  # bob was not made an admin


@pytest.mark.parametrize("path", ADMIN_PAGES[1:])
def test_admin_pages_open_for_admins(admin, path):
    assert admin.get(path).status_code == 200


def test_an_admin_edits_an_instrument_form(admin, cypher):
    page = f"/admin/instruments/{cypher}"
    form = {
        "name": "Tip",
        "field_type": "string",
        "choices": "Si\nSiN",
        "required": "1",
        "csrf_token": token(admin, page),
    }
    admin.post(page, data=form)
    shown = text_of(admin.get(page))
    assert "Field Tip is added." in shown
    table = shown.split("Choices and unit")[1]
    assert table.index("Operator") < table.index("Tip")
    tip = re.findall(r"/admin/fields/(\d+)/up", admin.get(page).text)[-1]
    admin.post(f"/admin/fields/{tip}/up", data={"csrf_token": token(admin, page)})
    table = text_of(admin.get(page)).split("Choices and unit")[1]
    assert table.index("Tip") < table.index("Operator")
    bad = {
        "name": "Gain",
        "field_type": "number",
        "choices": "high",
        "csrf_token": token(admin, page),
    }
    response = admin.post(page, data=bad)
    assert response.status_code == 400
    assert "the choice 'high' is not a number" in text_of(response)


def test_an_admin_adds_a_local_endpoint_and_sees_its_check(admin, tmp_path):
    archive = tmp_path / "archive"  # beside the instance: endpoints may not overlap
    archive.mkdir()
    form = {
        "name": "archive",
        "type": "local",
        "local.path": str(archive),
        "csrf_token": token(admin, "/admin/endpoints"),
    }
    response = admin.post("/admin/endpoints", data=form)
    shown = text_of(admin.get(response.headers["Location"]))
    assert "Endpoint archive is added." in shown
    assert f"ok reachable: {archive}" in shown
    assert "ok writable" in shown


def test_the_endpoint_form_offers_every_adapter_with_its_options(admin):
    page = admin.get("/admin/endpoints").text
    offered = re.findall(r'<option value="([^"]+)"', page.split('id="endpoint-type"')[1])
    assert {"local", "sftp", "globus"} <= set(offered)
    assert re.search(r'<label for="endpoint-sftp-key_file">key_file', page)
    assert 'name="sftp.key_file"' in page and 'name="globus.collection"' in page
    assert re.search(r'name="sftp.port"[^>]* type="number"', page)


def test_an_admin_adds_an_sftp_endpoint_with_its_options(admin, app, tmp_path):
    key_file = tmp_path / "id_ed25519"
    form = {
        "name": "cluster",
        "type": "sftp",
        "sftp.host": "127.0.0.1",
        "sftp.port": "1",  # nothing listens there: registering needs no live host
        "sftp.username": "dataflow",
        "sftp.path": "/data/incoming",
        "sftp.key_file": str(key_file),
        "local.path": "/not/this/one",  # another adapter's inputs are not read
        "csrf_token": token(admin, "/admin/endpoints"),
    }
    response = admin.post("/admin/endpoints", data=form)
    assert response.status_code == 302
    assert "Endpoint cluster is added." in text_of(admin.get(response.headers["Location"]))
    registered = endpoints.list_endpoints(app.extensions[RUNTIME], system())
    (endpoint,) = [row for row in registered if row.name == "cluster"]
    assert endpoint.adapter == "sftp"
    assert endpoint.options == {
        "host": "127.0.0.1",
        "port": 1,
        "username": "dataflow",
        "path": "/data/incoming",
        "key_file": str(key_file.resolve()),
    }


def test_an_endpoint_form_missing_an_option_is_shown_again(admin):
    form = {
        "name": "cluster",
        "type": "sftp",
        "sftp.host": "storage.example",
        "csrf_token": token(admin, "/admin/endpoints"),
    }
    response = admin.post("/admin/endpoints", data=form)
    assert response.status_code == 400
    assert "a sftp endpoint needs port, username, path" in text_of(response)
    assert 'value="storage.example"' in response.text
    assert '<option value="sftp" selected>' in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/datasets/12345"),
        ("get", "/datasets/12345/upload"),
        ("get", "/admin/instruments/12345"),
        ("post", "/admin/fields/12345/up"),
        ("post", "/admin/users/12345/deactivate"),
        ("post", "/account/keys/12345/revoke"),
        ("post", "/account/endpoints/no-such-endpoint/activate"),
        ("get", "/datasets/new?instrument=12345"),
    ],
)
def test_what_a_service_does_not_find_is_a_404_page(admin, method, path):
    response = getattr(admin, method)(path, data={"csrf_token": token(admin, "/datasets")})
    assert response.status_code == 404
    assert "text/html" in response.content_type
    assert "not found" in text_of(response).lower()


# The new-dataset wizard ----------------------------------------------------------------------


def create_through_the_page(client, instrument: int, name: str, **fields: str):
    """Submit the wizard's form with ``fields`` by label (extra rows as ``extra``)."""
    page = client.get(f"/datasets/new?instrument={instrument}")
    inputs = dict(re.findall(r'<label for="(field-\d+)">([^<]+)', page.text))
    by_label = {label.strip(): name for name, label in inputs.items()}
    data = {by_label[label]: value for label, value in fields.items() if label != "extra"}
    extra = fields.get("extra", {})
    data.update({"extra_name": list(extra), "extra_value": list(extra.values())})
    data.update({"name": name, "csrf_token": TOKEN.search(page.text).group(1)})
    return client.post(f"/datasets/new?instrument={instrument}", data=data)


def test_the_wizard_lists_the_instruments(ada, cypher):
    shown = text_of(ada.get("/datasets/new"))
    assert "Cypher" in shown and "Untitled instrument (no metadata form)" in shown


def test_the_wizard_renders_the_instruments_form(ada, cypher):
    page = ada.get(f"/datasets/new?instrument={cypher}").text
    assert re.search(r'type="number" step="any"[^>]* required', page)  # Temperature
    assert re.search(r'type="number" step="1"', page)  # Scans
    assert '<option value="contact"' in page  # Mode
    assert "Temperature (K) (required)" in text_of(ada.get(f"/datasets/new?instrument={cypher}"))


@pytest.mark.parametrize(
    ("fields", "api_values"),
    [
        ({"Mode": "AC"}, [{"field_name": "Mode", "field_value": "AC"}]),
        (
            {"Temperature": "hot", "Mode": "DC", "Scans": "2.5"},
            [
                {"field_name": "Temperature", "field_value": "hot"},
                {"field_name": "Mode", "field_value": "DC"},
                {"field_name": "Scans", "field_value": "2.5"},
            ],
        ),
        (
            {"Temperature": "300", "Mode": "AC", "extra": {"Mode": "contact"}},
            [
                {"field_name": "Temperature", "field_value": 300},
                {"field_name": "Mode", "field_value": "AC"},
                {"field_name": "Mode", "field_value": "contact"},
            ],
        ),
    ],
    ids=["missing", "wrong-types", "twice"],
)
def test_the_wizard_refuses_what_the_api_refuses_with_the_same_messages(
    ada, cli, cypher, fields, api_values
):
    key = cli("key", "create", "ada").strip()
    api = ada.application.test_client().post(
        "/api/v1/datasets",
        json={
            "name": "scan",
            "instrument_id": cypher,
            "metadata_field_values_attributes": api_values,
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert api.status_code == 400
    page = create_through_the_page(ada, cypher, "scan", **fields)
    assert page.status_code == 400
    shown = text_of(page)
    assert "The dataset was not created" in shown
    for name, messages in api.json["errors"].items():
        assert shown.count(f"{name}: {'; '.join(messages)}") == 1  # once, beside its field
        assert re.search(rf'<a href="#[^"]+">{name}</a>', page.text)  # the notice links to it
    assert "0 datasets. No dataset yet." in text_of(ada.get("/datasets"))  # nothing was created


def test_the_wizards_extra_rows_keep_numbers_as_numbers_as_the_api_does(ada, cypher, instance):
    extra = {
        "Stage-Tilt": "2.5",
        "Count": "373",
        "Gain": "2.0",
        "Cleaned": "true",
        "Notes": "null",
        "tags": '["afm", "pzt"]',
        "Code": "007",
        "Quoted": '"PZT"',
        "Object": '{"a": 1}',
    }
    response = create_through_the_page(
        ada, cypher, "typed", Temperature="373", Scans="4", extra=extra
    )
    assert response.status_code == 302, text_of(response)
    (saved,) = (instance / "dataflow" / "cypher").glob("*/*_typed/metadata.json")
    document = json.loads(saved.read_text())["dataset"]
    assert document["metadata"] == {
        "Temperature": 373,
        "Scans": 4,
        "Stage": {"Tilt": 2.5},
        "Count": 373,
        "Gain": 2.0,
        "Cleaned": True,
        "Notes": None,
        "tags": ["afm", "pzt"],
        "Code": "007",  # not JSON: the text as typed
        "Quoted": '"PZT"',
        "Object": '{"a": 1}',
    }
    assert document["units"] == {"Temperature": "K"}
    assert '"Gain": 2.0' in saved.read_text()


def test_an_extra_row_the_api_would_refuse_gets_the_apis_message(ada, cypher):
    page = create_through_the_page(
        ada, cypher, "scan", Temperature="300", extra={"tags": '[["afm"]]'}
    )
    assert page.status_code == 400
    shown = text_of(page)
    assert shown.count("tags: must be a list of text, numbers, true/false or null") == 1
    assert 'id="extra-error-1"' in page.text  # beside the row that holds it


def test_a_misfit_on_the_page_names_the_value_and_what_fits(ada, cypher):
    page = create_through_the_page(ada, cypher, "scan", Temperature="hot")
    assert page.status_code == 400
    assert "Temperature: must be a number, not 'hot'" in text_of(page)


def test_a_blank_title_is_refused_and_the_values_stay(ada, cypher):
    page = create_through_the_page(ada, cypher, "  ", Temperature="373", Mode="contact")
    assert text_of(page).count("must not be blank") == 1
    assert 'value="373"' in page.text
    assert '<option value="contact" selected>' in page.text


def test_the_wizard_creates_the_dataset_and_goes_to_its_upload_page(ada, cypher):
    response = create_through_the_page(
        ada, cypher, "PZT scan", Temperature="373.5", Mode="AC", Scans="3",
        extra={"Microscope-Vendor": "Asylum Research"},
    )  # fmt: skip
    assert response.status_code == 302
    upload = ada.get(response.headers["Location"])
    assert "Add files to PZT scan" in text_of(upload)
    dataset = ada.get(response.headers["Location"].removesuffix("/upload"))
    shown = text_of(dataset)
    assert "Temperature 373.5 K" in shown
    assert "Microscope Vendor Asylum Research" in shown  # nested by "-"


def test_persisting_fields_are_prefilled_from_the_previous_dataset(ada, cli, cypher):
    assert "kept from your last dataset" not in ada.get(f"/datasets/new?instrument={cypher}").text
    create_through_the_page(ada, cypher, "first", Temperature="373", Mode="AC")
    kept = re.findall(r'<label for="field-\d+">([^<]+).*?kept from your last dataset', ada.get(
        f"/datasets/new?instrument={cypher}").text)  # fmt: skip
    assert [label.strip() for label in kept] == ["Temperature"]  # Operator was left blank
    create_through_the_page(ada, cypher, "first", Temperature="373", Mode="AC", Operator="Ada")
    create_through_the_page(ada, cypher, "second", Temperature="80", Mode="AC", Operator="Ada L.")
    page = ada.get(f"/datasets/new?instrument={cypher}").text
    assert re.search(
        r'name="field-\d+" type="number" step="any" inputmode="decimal" value="80"', page
    )
    assert 'value="Ada L."' in page
    assert "selected" not in page.split("Mode")[1].split("</select>")[0]  # not persisted
    add_user(cli, "bob")
    other = ada.application.test_client()
    log_in(other, "bob")
    assert 'value="80"' not in other.get(f"/datasets/new?instrument={cypher}").text


def test_the_cli_marks_a_field_persisting(cli, cypher):
    shown = cli.json("instrument", "field", str(cypher), "Sample", "--persist")
    assert shown["persist"] is True


# Datasets ------------------------------------------------------------------------------------


def test_my_datasets_page_searches_and_pages(ada, app):
    app.config["DATAFLOW_LITE"]["per_page"] = 2
    for name in ("PZT one", "PZT two", "BTO three"):
        create_through_the_page(ada, 0, name)
    shown = text_of(ada.get("/datasets"))
    assert "3 datasets." in shown and "Page 1 of 2" in shown
    assert shown.index("BTO three") < shown.index("PZT two")  # newest first
    assert "PZT one" in text_of(ada.get("/datasets?page=2"))
    found = text_of(ada.get("/datasets?q=PZT"))
    assert "2 datasets match “PZT”." in found and "BTO" not in found


def test_admins_see_who_made_each_dataset(ada, cli, app):
    add_user(cli, "root", admin=True)
    create_through_the_page(ada, 0, "made by ada")
    assert "Creator" not in text_of(ada.get("/datasets"))
    root = app.test_client()
    log_in(root, "root")
    shown = text_of(root.get("/datasets"))
    assert "Creator" in shown and "made by ada Untitled instrument Ada" in shown


def upload(client, key: str, dataset_id: int, name: str, content: bytes):
    return client.post(
        "/api/v1/dataset-file-upload",
        data={"dataset_id": str(dataset_id), "file": (io.BytesIO(content), name)},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_the_dataset_page_offers_each_landed_file_for_download(ada, cli, app):
    key = cli("key", "create", "ada").strip()
    api = app.test_client()
    dataset = api.post("/api/v1/datasets", json={"name": "scan"},
                       headers={"Authorization": f"Bearer {key}"}).json  # fmt: skip
    content = b"<script>alert(1)</script> not a page here\n"
    added = upload(api, key, dataset["id"], "page.html", content).json
    assert added["transfer_state"] == "done"
    page = ada.get(f"/datasets/{dataset['id']}")
    link = f"/datasets/{dataset['id']}/files/{added['id']}/download"
    assert f'href="{link}"' in page.text
    with ada.get(link) as response:
        assert response.status_code == 200 and response.data == content
        assert response.mimetype == "application/octet-stream"  # never run as this server's
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.headers["Content-Length"] == str(len(content))

    etag = hashlib.sha256(content).hexdigest()
    with ada.get(link, headers={"Range": "bytes=8-15"}) as part:  # a resumed download
        assert part.status_code == 206 and part.data == content[8:16]
        assert part.headers["Content-Range"] == f"bytes 8-15/{len(content)}"
        assert part.headers["ETag"] == f'"{etag}"'
    with ada.get(link, headers={"Range": "bytes=8-", "If-Range": '"another"'}) as whole:
        assert whole.status_code == 200 and whole.data == content  # not spliced onto another
    beyond = ada.get(link, headers={"Range": f"bytes={len(content)}-"})
    assert beyond.status_code == 416

    add_user(cli, "bob")
    bob = app.test_client()
    log_in(bob, "bob")
    assert bob.get(link).status_code == 404  # another user's file does not exist for them
    assert ada.get(f"/datasets/{dataset['id']}/files/999/download").status_code == 404

    landed = Path(added["destination"])
    landed.unlink()
    (landed.parent / "elsewhere").write_bytes(content)
    landed.symlink_to(landed.parent / "elsewhere")  # planted: never followed
    refused = ada.get(link)
    assert refused.status_code == 409 and "links at the destination are never followed" in (
        text_of(refused)
    )


def test_files_on_an_endpoint_that_cannot_read_back_are_not_offered(ada, cli, app):
    cluster = cli.json("endpoint", "add", "cluster", "--type", "sftp", "--host", "127.0.0.1",
                       "--port", "1", "--username", "dataflow", "--path", "/data")  # fmt: skip
    ada.post("/account/destination",
             data={"endpoint": cluster["id"], "csrf_token": token(ada, "/account")})  # fmt: skip
    key = cli("key", "create", "ada").strip()
    api = app.test_client()
    dataset = api.post("/api/v1/datasets", json={"name": "remote"},
                       headers={"Authorization": f"Bearer {key}"}).json  # fmt: skip
    added = upload(api, key, dataset["id"], "a.txt", b"a\n").json
    page = ada.get(f"/datasets/{dataset['id']}")
    assert "Files on cluster (sftp) cannot be downloaded through this server" in text_of(page)
    assert "/download" not in page.text
    refused = ada.get(f"/datasets/{dataset['id']}/files/{added['id']}/download")
    assert refused.status_code == 409 and "cannot be read back here" in text_of(refused)


def test_the_tus_routes_take_the_session_only_with_its_csrf_token(ada):
    tus = {"Tus-Resumable": "1.0.0", "Upload-Length": "3"}
    dataset = create_through_the_page(ada, 0, "tus")
    dataset_id = int(dataset.headers["Location"].split("/")[-2])
    metadata = f"dataset_id {base64.b64encode(str(dataset_id).encode()).decode()},filename YS50eHQ="
    headers = {**tus, "Upload-Metadata": metadata}
    assert ada.post("/api/v1/uploads/", headers=headers).status_code == 401  # no token
    wrong = ada.post("/api/v1/uploads/", headers={**headers, "X-CSRFToken": "forged"})
    assert wrong.status_code == 401
    good = {**headers, "X-CSRFToken": META_TOKEN.search(ada.get("/datasets").text).group(1)}
    created = ada.post("/api/v1/uploads/", headers=good)
    assert created.status_code == 201
    patched = ada.patch(
        created.headers["Location"],
        data=b"abc",
        headers={**good, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert patched.status_code == 204
    shown = text_of(ada.get(f"/datasets/{dataset_id}"))
    assert "a.txt 3 bytes" in shown
    # A page elsewhere cannot ask: no cross-origin grant, to a preflight or to a request.
    preflight = ada.options("/api/v1/uploads/", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_the_admin_transfers_page_shows_files_with_their_bytes(admin, cli, app):
    key = cli("key", "create", "root").strip()
    api = app.test_client()
    dataset = api.post("/api/v1/datasets", json={"name": "run"},
                       headers={"Authorization": f"Bearer {key}"}).json  # fmt: skip
    upload(api, key, dataset["id"], "frame.raw", b"x" * 3000)
    shown = text_of(admin.get("/admin/transfers"))
    assert "frame.raw 2.9 KiB" in shown and "100 %, 2.9 KiB" in shown
    assert "metadata.json" not in shown.split("failed ones first.")[1]
    rewrites = text_of(admin.get("/admin/transfers?show=metadata"))
    assert "metadata.json" in rewrites.split("failed ones first.")[1]
    assert "frame.raw" not in rewrites


def test_someone_elses_dataset_is_a_404_page(ada, cli, app):
    create_through_the_page(ada, 0, "mine")
    add_user(cli, "bob")
    bob = app.test_client()
    log_in(bob, "bob")
    response = bob.get("/datasets/1")
    assert response.status_code == 404
    assert "dataset 1 not found" in text_of(response)
    assert "text/html" in response.content_type


def test_errors_are_pages_on_the_web_and_json_on_the_api(ada):
    assert ada.get("/datasets/99").content_type.startswith("text/html")
    assert ada.get("/api/v1/datasets/99").json["code"] == 401
    browser = ada.get("/nope", headers={"Accept": "text/html,*/*;q=0.8"})
    assert browser.status_code == 404 and "Not Found" in text_of(browser)
    assert ada.get("/nope").json["code"] == 404  # scripts still get JSON


def test_the_api_docs_page_is_served_from_this_server(client):
    page = client.get("/docs/api")
    assert "API v1 documentation" in text_of(page)
    assets = re.findall(r'(?:src|href)="(/docs/api/assets/[^"]+)"', page.text)
    assert sorted(assets) == [
        "/docs/api/assets/swagger-ui-bundle.js",
        "/docs/api/assets/swagger-ui.css",
    ]
    for asset in assets:
        with client.get(asset) as response:
            assert response.status_code == 200 and len(response.data) > 10_000
    assert "dataflow-lite 0.1.0" in text_of(page)


def test_the_search_box_takes_the_language_and_facets_narrow_it(ada, cli, app):
    cypher = cli.json("instrument", "add", "Cypher")["id"]
    create_through_the_page(ada, 0, "PZT one")
    page = ada.get("/datasets")
    assert "key>N" in text_of(page)  # the one-line hint shows the syntax
    refused = ada.get("/datasets?q=PZT Temp>hot")
    assert refused.status_code == 400
    assert "cannot read 'Temp>hot'" in text_of(refused)
    found = ada.get("/datasets?q=PZT")
    # The facet links narrow the search: the untitled instrument, this month.
    assert re.search(r'href="/datasets\?q=PZT\+instrument:0">Untitled instrument</a>', found.text)
    narrowed = text_of(ada.get("/datasets?q=PZT+instrument%3A0"))
    assert "1 dataset matches" in narrowed
    assert "0 datasets match" in text_of(ada.get(f"/datasets?q=PZT+instrument%3A{cypher}"))
