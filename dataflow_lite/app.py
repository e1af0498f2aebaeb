"""The application factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from dataflow_lite import __version__
from dataflow_lite.adapter import AdapterContext, Adapters, adapter_settings, discover_adapters
from dataflow_lite.settings import ENV_PREFIX, load_settings
from dataflow_lite.store import db
from dataflow_lite.store.instance_keys import PasswordCipher, instance_secret_key
from dataflow_lite.transfers.queue import TransferQueue


def instance_path_from_environment() -> Path:
    """The instance folder: ``$DATAFLOW_LITE_INSTANCE``, else ``./instance``."""
    return Path(os.environ.get(ENV_PREFIX + "INSTANCE") or "instance").resolve()


class _KeysInOrder(DefaultJSONProvider):
    """Flask's JSON, with keys in the order the views give them (DataFlow's order)."""

    sort_keys = False


def create_app(
    test_config: dict[str, Any] | None = None, instance_path: Path | None = None
) -> Flask:
    """Create the dataflow-lite app on an instance folder (created if missing).

    ``test_config`` overrides settings by name (see :mod:`dataflow_lite.settings`).
    """
    instance = (instance_path or instance_path_from_environment()).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    adapter_classes = discover_adapters()
    settings = load_settings(
        instance, overrides=test_config, extra=adapter_settings(adapter_classes)
    )
    staging = instance / settings["staging_dir"]
    staging.mkdir(parents=True, exist_ok=True)

    app = Flask(__name__, instance_path=str(instance), instance_relative_config=True)
    app.config.update(
        SECRET_KEY=instance_secret_key(instance),
        MAX_CONTENT_LENGTH=settings["max_upload_bytes"],
        DATAFLOW_LITE=settings,
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
    app.extensions["dataflow_lite.password_cipher"] = PasswordCipher(instance)
    app.extensions["dataflow_lite.adapters"] = Adapters(
        adapter_classes, AdapterContext(instance, staging, settings)
    )
    engine = db.init_app(app, instance / settings["database"], settings["busy_timeout_ms"])
    app.extensions["dataflow_lite.transfers"] = TransferQueue(
        engine,
        app.extensions["dataflow_lite.adapters"],
        app.extensions["dataflow_lite.password_cipher"],
        instance / "queue.sqlite3",
        settings,
    )

    from dataflow_lite import web
    from dataflow_lite.api import register_api

    register_api(app)
    web.init_app(app)
    return app
