"""Logging in and out of the web pages."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from dataflow_lite.services.logins import (
    LoginRefused,
    attempt_login,
    end_session,
    session_user,
    start_session,
)
from dataflow_lite.store.db import get_session
from dataflow_lite.web.pages import safe_next

bp = Blueprint("accounts", __name__, template_folder="templates")


@bp.get("/")
def home():
    """The start page: one's datasets (the login page first, if need be)."""
    return redirect(url_for("dataset_pages.index"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a successful login goes on to ``next`` (a path of this server)."""
    target = safe_next(request.values.get("next"), url_for("dataset_pages.index"))
    if request.method == "GET":
        if session_user() is not None:
            return redirect(target)
        return render_template("accounts/login.html", next=target, username="")
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    session = get_session()
    try:
        user = attempt_login(session, username, password, request.remote_addr)
    except LoginRefused as refused:
        session.commit()  # the failure counts
        response = render_template(
            "accounts/login.html", next=target, username=username, error=str(refused)
        )
        headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else {}
        return response, refused.status, headers
    session.commit()
    start_session(user)
    return redirect(target)


@bp.post("/logout")
def logout():
    """Log out and go back to the login page."""
    end_session()
    flash("You are logged out.", "success")
    return redirect(url_for("accounts.login"))
