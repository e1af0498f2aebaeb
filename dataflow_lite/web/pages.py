"""What every web page shares: the logged-in user, the guards, error pages, headers and assets."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.exceptions import Forbidden, HTTPException

from dataflow_lite import __version__
from dataflow_lite.faces import API_PATH
from dataflow_lite.services.errors import ServiceError
from dataflow_lite.services.identity import Identity
from dataflow_lite.store.models import User
from dataflow_lite.web.sessions import session_identity, session_user

bp = Blueprint(
    "web",
    __name__,
    static_folder="static",
    static_url_path="/assets",
    template_folder="templates",
)

WEB_BLUEPRINTS = frozenset({"web", "accounts", "my_account", "dataset_pages", "admin", "docs"})
# Everything is served by this server: no script, style or font comes from anywhere else.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)

View = TypeVar("View", bound=Callable[..., Any])


def current_user() -> User:
    """The logged-in user of a page that requires one (see ``login_required``)."""
    user = session_user()
    assert user is not None
    return user


def current_identity() -> Identity:
    """The logged-in user as the services see them, on a page that requires a login."""
    identity = session_identity()
    assert identity is not None
    return identity


def login_required(view: View) -> View:
    """Send visitors who are not logged in to the login page, and back here afterwards."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if session_user() is None:
            target = request.full_path if request.query_string else request.path
            return redirect(url_for("accounts.login", next=target))
        return view(*args, **kwargs)

    return cast(View, wrapped)


def admin_required(view: View) -> View:
    """Pages for administrators only: others get a 403 page."""

    @login_required
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user().is_admin:
            raise Forbidden("This page is for administrators only.")
        return view(*args, **kwargs)

    return cast(View, wrapped)


def field_errors(refused: ServiceError | None) -> dict[str, str]:
    """A refused form's messages by field, each field's on one line, to show beside it."""
    given = refused.errors if refused else {}
    return {name: "; ".join(messages) for name, messages in given.items()}


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this server, else ``default`` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default


def error_page(error: HTTPException) -> Response | None:
    """The error as an HTML page, for the web pages and for browsers; None lets JSON answer."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    if request.blueprint not in WEB_BLUEPRINTS and best != "text/html":
        return None
    # Every error the pages see carries its message as the description: Werkzeug's own, the
    # services' (mapped to HTTP once, by the API's error handler) and the pages' aborts.
    response = make_response(
        render_template("error.html", code=error.code, title=error.name, message=error.description),
        error.code or 500,
    )
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The site icon, for what asks the conventional path (browsers showing the JSON pages)."""
    return send_from_directory(
        bp.static_folder or "static",
        "favicon.ico",
        mimetype="image/vnd.microsoft.icon",
        max_age=86400,
    )


@bp.app_context_processor
def page_context() -> dict[str, Any]:
    """What every template may use: the version and who is logged in."""
    if request.path.startswith(API_PATH):
        return {}
    return {"version": __version__, "user": session_user()}


@bp.after_app_request
def page_headers(response: Response) -> Response:
    """Security headers on every page; pages with users' data are never cached."""
    if request.path.startswith(API_PATH):
        return response
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_filter("size")
def size_filter(size: int | None) -> str:
    """A byte count in words a person reads: ``1.5 MiB``."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


@bp.app_template_filter("utc")
def utc_filter(moment: datetime | None) -> str:
    """A time as the pages show it: ``2026-11-25 14:03 UTC``."""
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""
