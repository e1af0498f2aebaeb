"""The client address and scheme behind trusted proxies, the Secure cookie, and the site icon."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from dataflow_lite import create_app
from dataflow_lite.store.models import LoginThrottle

from .test_web import PASSWORD, add_user, log_in, token

# Behind TLS, Flask-WTF also wants a Referer of this server.
FORWARDED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "Referer": "https://localhost/login",
}


def failed_login(client, headers: dict[str, str]) -> None:
    data = {"username": "nobody", "password": "guess", "csrf_token": token(client)}
    response = client.post("/login", data=data, headers=headers)
    assert (response.status_code, "Wrong username or password." in response.text) == (400, True)


def throttle_keys(app) -> set[str]:
    with Session(app.extensions["dataflow_lite.runtime"].engine) as session:
        return {row.key for row in session.exec(select(LoginThrottle))}


def test_forwarded_headers_are_ignored_without_trusted_proxies(client):
    failed_login(client, FORWARDED)
    assert "address:127.0.0.1" in throttle_keys(client.application)
    assert "address:203.0.113.7" not in throttle_keys(client.application)


def test_the_trusted_proxy_reports_the_client_address_and_scheme(instance: Path):
    app = create_app({"trusted_proxies": 1}, instance_path=instance)
    client = app.test_client()
    failed_login(client, FORWARDED)
    assert "address:203.0.113.7" in throttle_keys(app)
    assert "address:127.0.0.1" not in throttle_keys(app)
    # Only as many entries as there are trusted proxies are believed: the first is forged.
    failed_login(client, {"X-Forwarded-For": "198.51.100.1, 203.0.113.8"})
    assert "address:203.0.113.8" in throttle_keys(app)
    assert "address:198.51.100.1" not in throttle_keys(app)


def test_the_session_cookie_is_secure_when_the_proxy_says_https(cli, instance: Path):
    add_user(cli, "ada")
    app = create_app({"trusted_proxies": 1}, instance_path=instance)
    client = app.test_client()
    data = {"username": "ada", "password": PASSWORD, "csrf_token": token(client)}
    response = client.post("/login", data=data, headers=FORWARDED)
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_the_session_cookie_is_secure_when_configured(cli, instance: Path):
    add_user(cli, "ada")
    client = create_app({"secure_cookies": True}, instance_path=instance).test_client()
    response = log_in(client, "ada")
    assert "Secure" in response.headers["Set-Cookie"]


def test_the_session_cookie_is_plain_over_plain_http_by_default(cli, client):
    add_user(cli, "ada")
    assert "Secure" not in log_in(client, "ada").headers["Set-Cookie"]


def test_the_site_icon_is_served(client):
    with client.get("/favicon.ico") as response:
        assert response.status_code == 200
        assert response.mimetype == "image/vnd.microsoft.icon"
        assert response.data[:4] == b"\x00\x00\x01\x00"  # an ICO file
