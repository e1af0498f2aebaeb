"""Logging in and out of the web pages."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from dataflow_lite.faces import runtime
from dataflow_lite.services import logins
from dataflow_lite.web.pages import safe_next
from dataflow_lite.web.sessions import end_session, session_user, start_session

bp = Blueprint("accounts", __name__, template_folder="templates")


@bp.get("/")
def home() -> ResponseReturnValue:
    """The start page: one's datasets (the login page first, if need be)."""
    return redirect(url_for("dataset_pages.index"))


def _status(refused: logins.LoginRefused) -> int:
    if refused.throttled:
        return 429
    return 403 if refused.deactivated else 400


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The login form; a successful login goes on to ``next`` (a path of this server)."""
    target = safe_next(request.values.get("next"), url_for("dataset_pages.index"))
    if request.method == "GET":
        if session_user() is not None:
            return redirect(target)
        return render_template("accounts/login.html", next=target, username="")
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    try:
        logged_in = logins.login(runtime(), username, password, request.remote_addr)
    except logins.LoginRefused as refused:
        page = render_template(
            "accounts/login.html", next=target, username=username, error=str(refused)
        )
        headers = {"Retry-After": str(refused.retry_after)} if refused.throttled else {}
        return page, _status(refused), headers
    start_session(logged_in)
    return redirect(target)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Log out and go back to the login page."""
    end_session()
    flash("You are logged out.", "success")
    return redirect(url_for("accounts.login"))
