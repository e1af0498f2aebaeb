"""Bearer API keys on every API request, and the user they belong to."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, request
from flask_wtf.csrf import ValidationError, validate_csrf
from sqlalchemy import update

from dataflow_lite.api.errors import DataflowError
from dataflow_lite.services.logins import session_user
from dataflow_lite.store.api_keys import KeyRejected, verify_key
from dataflow_lite.store.db import get_session
from dataflow_lite.store.models import ApiKey, User, utcnow

# last_used_at is written at most this often per key, so reads stay reads.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# The web pages call the API with the logged-in session and its CSRF token in this header.
CSRF_HEADER = "X-CSRFToken"


def require_api_key() -> None:
    """Load the user of the request's ``Authorization: Bearer`` key, or answer 401.

    Without a key, a request carrying the session's CSRF token in ``X-CSRFToken`` (the web
    pages' own calls) is the logged-in user's.
    """
    header = request.headers.get("Authorization", "")
    if not header and CSRF_HEADER in request.headers:
        g.user = _session_user()
        return
    scheme, _, key = header.strip().partition(" ")
    if not header:
        raise _unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <key>'")
    session = get_session()
    try:
        user, row = verify_key(session, current_app.config["SECRET_KEY"], key.strip())
    except KeyRejected as error:
        raise _unauthorized(str(error)) from error
    now = utcnow()
    stale = row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION
    # End the read transaction now: a long upload must not hold the database while it streams.
    session.commit()
    if stale:
        with current_app.extensions["dataflow_lite.engine"].begin() as connection:
            connection.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    g.user = user


def _session_user() -> User:
    try:
        validate_csrf(request.headers[CSRF_HEADER])
    except ValidationError as error:
        raise _unauthorized(f"the session's CSRF token was refused: {error}") from error
    user = session_user()
    if user is None:
        raise _unauthorized("the session has ended: log in again, or send an API key")
    get_session().commit()  # as for keys: a long upload must not hold the database
    return user


def current_user() -> User:
    """The user whose API key authenticated this request."""
    return g.user


def _unauthorized(message: str) -> DataflowError:
    error = DataflowError(401, message)
    error.data["headers"] = {"WWW-Authenticate": 'Bearer realm="dataflow-lite"'}
    return error
