"""The application factory: the runtime, the API and the web pages on one Flask app."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from dataflow_lite import __version__, bootstrap
from dataflow_lite.faces import RUNTIME


class _KeysInOrder(DefaultJSONProvider):
    """Flask's JSON, with keys in the order the views give them (DataFlow's order)."""

    sort_keys = False


def create_app(
    test_config: dict[str, Any] | None = None, instance_path: Path | None = None
) -> Flask:
    """Create the dataflow-lite app on an instance folder (created if missing).

    ``test_config`` overrides settings by name (see :mod:`dataflow_lite.settings`).
    """
    runtime = bootstrap.build(instance_path, test_config)
    app = Flask(__name__, instance_path=str(runtime.instance), instance_relative_config=True)
    app.config.update(
        SECRET_KEY=runtime.secret_key,
        MAX_CONTENT_LENGTH=runtime.settings["max_upload_bytes"],
        DATAFLOW_LITE=runtime.settings,
        API_TITLE="dataflow-lite",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
    )
    app.json = _KeysInOrder(app)
    proxies = runtime.settings["trusted_proxies"]
    if proxies > 0:
        # The client's address (for the login throttle and the audit trail) and the scheme
        # (for Secure cookies) as the trusted proxies report them; nothing else is believed.
        # Flask's documented way is ``app.wsgi_app = ProxyFix(...)``; set through vars() since
        # typing sees wsgi_app as a method.
        vars(app)["wsgi_app"] = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    app.extensions[RUNTIME] = runtime

    from dataflow_lite import web
    from dataflow_lite.api import register_api

    api_blueprints = register_api(app)
    csrf = web.init_app(app)
    # The API authenticates with bearer keys, or with the session plus its CSRF token in a
    # header (see dataflow_lite.api.auth): its blueprints need no form token.
    for blueprint in api_blueprints:
        csrf.exempt(blueprint)
    return app


def served_app() -> Flask:
    """The app as a server process runs it for its life (``wsgi.py``, ``dataflow-lite serve``).

    What the app holds until the process ends (modules, settings, schemas: ~150,000 objects)
    is moved out of the garbage collector's view, as Python's documentation advises for
    servers: a full collection walked all of it, an 85 ms pause every few requests that
    build many rows (a facet count of 10,000 datasets), and now walks only what requests made.
    """
    app = create_app()
    gc.collect()  # what making it left unreachable is freed, not frozen
    gc.freeze()
    return app
