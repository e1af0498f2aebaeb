"""Bearer API keys on every API request, and the user they belong to."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, request
from sqlalchemy import update

from .api_keys import KeyRejected, verify_key
from .db import get_session
from .errors import DataflowError
from .models import ApiKey, User, utcnow

# last_used_at is written at most this often per key, so reads stay reads.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def require_api_key() -> None:
    """Load the user of the request's ``Authorization: Bearer`` key, or answer 401."""
    header = request.headers.get("Authorization", "")
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


def current_user() -> User:
    """The user whose API key authenticated this request."""
    return g.user


def _unauthorized(message: str) -> DataflowError:
    error = DataflowError(401, message)
    error.data["headers"] = {"WWW-Authenticate": 'Bearer realm="dataflow-lite"'}
    return error
