"""Bearer API keys on every API request, and the identity they prove.

The web pages call the API too: without a key, a request carrying the session's CSRF token in
``X-CSRFToken`` is the logged-in user's.
"""

from __future__ import annotations

from flask import g, request
from flask_wtf.csrf import ValidationError, validate_csrf

from dataflow_lite.api.errors import DataflowError
from dataflow_lite.faces import runtime
from dataflow_lite.services import users
from dataflow_lite.services.identity import Identity
from dataflow_lite.store.api_keys import KeyRejected
from dataflow_lite.web.sessions import session_identity

CSRF_HEADER = "X-CSRFToken"


def require_api_key() -> None:
    """Find the identity of the request's ``Authorization: Bearer`` key, or answer 401."""
    header = request.headers.get("Authorization", "")
    if not header and CSRF_HEADER in request.headers:
        g.identity = _session_identity()
        return
    scheme, _, key = header.strip().partition(" ")
    if not header:
        raise _unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <key>'")
    try:
        g.identity = users.authenticate(runtime(), key.strip(), request.remote_addr)
    except KeyRejected as error:
        raise _unauthorized(str(error)) from error


def _session_identity() -> Identity:
    try:
        validate_csrf(request.headers[CSRF_HEADER])
    except ValidationError as error:
        raise _unauthorized(f"the session's CSRF token was refused: {error}") from error
    identity = session_identity()
    if identity is None:
        raise _unauthorized("the session has ended: log in again, or send an API key")
    return identity


def current_identity() -> Identity:
    """Who this request is, as ``require_api_key`` found."""
    return g.identity


def _unauthorized(message: str) -> DataflowError:
    error = DataflowError(401, message)
    error.data["headers"] = {"WWW-Authenticate": 'Bearer realm="dataflow-lite"'}
    return error
