"""The API documentation page: the OpenAPI document in Swagger UI, served from this server.

Swagger UI's files come from the ``flask-swagger-ui`` package (which follows Swagger UI's
releases); only its static assets are used, with our own page and start-up script, so that no
inline script is needed and a logged-in user can try the API with the session.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, abort, render_template, send_from_directory
from flask.typing import ResponseReturnValue

bp = Blueprint("docs", __name__, url_prefix="/docs", template_folder="templates")

SWAGGER_UI_ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js"}


@bp.get("/api")
def api() -> ResponseReturnValue:
    """Swagger UI on ``/api/v1/openapi.json``."""
    return render_template("docs/api.html")


@bp.get("/api/assets/<name>")
def swagger_ui_asset(name: str) -> ResponseReturnValue:
    """One of Swagger UI's files, as shipped by flask-swagger-ui."""
    if name not in SWAGGER_UI_ASSETS:
        abort(404)
    folder = files("flask_swagger_ui") / "dist"
    return send_from_directory(str(folder), name, max_age=24 * 3600)
