"""The web session: Flask's signed cookie, holding the user's id, password fingerprint and
session generation.

Every request reads the user again (``services.logins.session_user``), so a deactivated user, a
changed password or a logout ends the session at once: logging out raises the user's session
generation on the server, and a cookie that carries an older one (a copy kept elsewhere) is over.
"""

from __future__ import annotations

from flask import g, request
from flask import session as cookie

from dataflow_lite.faces import runtime
from dataflow_lite.services import logins
from dataflow_lite.services.identity import Identity
from dataflow_lite.store.models import User

SESSION_USER = "user_id"
SESSION_METHOD = "login_method"
SESSION_PASSWORD = "password_fingerprint"
SESSION_GENERATION = "session_generation"


def start_session(logged_in: logins.LoggedIn) -> None:
    """Log the user in: a new session (never one that existed before the login)."""
    cookie.clear()
    cookie.permanent = True
    cookie[SESSION_USER] = logged_in.user.id
    cookie[SESSION_PASSWORD] = logins.password_fingerprint(logged_in.user)
    cookie[SESSION_METHOD] = logged_in.method
    cookie[SESSION_GENERATION] = logged_in.user.session_generation


def end_session() -> None:
    """Log out: end the user's sessions on the server, then forget this one and its CSRF token."""
    user = session_user()
    if user is not None:
        logins.end_sessions(runtime(), user.id)
    cookie.clear()


def session_user() -> User | None:
    """The active user logged in to this request's session, or None."""
    if "session_user" not in g:
        g.session_user = logins.session_user(
            runtime(),
            cookie.get(SESSION_USER),
            cookie.get(SESSION_PASSWORD, ""),
            cookie.get(SESSION_GENERATION),
        )
    return g.session_user


def session_identity() -> Identity | None:
    """The logged-in user as the services see them, or None."""
    user = session_user()
    return Identity(user, "web-session", request.remote_addr) if user is not None else None
