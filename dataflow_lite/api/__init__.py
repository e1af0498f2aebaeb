"""API v1, DataFlow's surface: one module per resource, every route behind an API key."""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import Flask, Request
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from dataflow_lite.api import json_bodies
from dataflow_lite.api.auth import require_api_key
from dataflow_lite.api.errors import Api
from dataflow_lite.faces import runtime


class Parser(FlaskParser):
    """Bad arguments are a 400 Bad Request, like every other bad input of this API."""

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: Request) -> Any:
        """The JSON body, within the size, depth and integer bounds the settings set."""
        if not is_json_request(req):
            return core.missing
        settings = runtime().settings
        data = json_bodies.read_body(req, settings["max_json_bytes"])
        # Text that is not UTF-8 raises UnicodeDecodeError, which webargs answers with 400.
        return json_bodies.loads(
            data.decode("utf-8"), settings["max_json_depth"], settings["max_json_integer_digits"]
        )


class Blueprint(flask_smorest.Blueprint):
    """An API v1 blueprint: under ``/api/v1``, every route requiring an API key."""

    ARGUMENTS_PARSER = Parser()

    def __init__(self, name: str, import_name: str, description: str) -> None:
        super().__init__(name, import_name, url_prefix="/api/v1", description=description)
        self.before_request(require_api_key)


def register_api(app: Flask) -> list[Blueprint]:
    """Register every API blueprint on ``app``, with the one error handler; return them."""
    from dataflow_lite.api import (
        audit,
        dataset_files,
        datasets,
        file_bundles,
        instruments,
        passwords,
        transfers,
        transports,
        tus,
        user_settings,
    )

    api = Api(app)
    modules = (
        user_settings,
        instruments,
        transports,
        passwords,
        datasets,
        dataset_files,
        file_bundles,
        tus,
        transfers,
        audit,
    )
    for module in modules:
        api.register_blueprint(module.blp)
    return [module.blp for module in modules]
