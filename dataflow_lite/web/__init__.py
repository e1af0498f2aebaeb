"""The web pages: server-rendered Flask blueprints, one per area, beside API v1.

``templates/<blueprint>/`` holds each area's templates and ``static/`` the plain JavaScript and
CSS every page loads from this server (no build step, nothing from elsewhere). Forms carry a CSRF
token (Flask-WTF); the API's blueprints are exempt, since they authenticate with bearer keys, or
with the logged-in session plus its CSRF token in a header (see ``dataflow_lite.api.auth``).
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect

from dataflow_lite.faces import PAGE_ERROR_HANDLER
from dataflow_lite.web import accounts, admin, dataset_pages, docs, my_account, pages

# A session lasts this long after the last page or upload request (the cookie is refreshed).
SESSION_LIFETIME = timedelta(hours=12)


class _SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure when configured so or when the request came by https.

    The scheme is the one the trusted proxies report (setting ``trusted_proxies``).
    """

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or request.is_secure


def init_app(app: Flask) -> CSRFProtect:
    """Register the web pages and CSRF protection on ``app``."""
    app.config.update(
        SESSION_COOKIE_NAME="dataflow_lite_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["DATAFLOW_LITE"]["secure_cookies"],
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # The token lives as long as the session: a long upload page keeps working.
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.session_interface = _SessionCookies()
    csrf = CSRFProtect(app)
    for module in (pages, accounts, my_account, dataset_pages, admin, docs):
        app.register_blueprint(module.bp)
    app.extensions[PAGE_ERROR_HANDLER] = pages.error_page
    return csrf
