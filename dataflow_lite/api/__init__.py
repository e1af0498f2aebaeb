"""API v1, DataFlow's surface: one module per resource, every route behind an API key."""

from __future__ import annotations

import flask_smorest
from flask import Flask
from webargs.flaskparser import FlaskParser

from dataflow_lite.api.auth import require_api_key
from dataflow_lite.api.errors import Api


class Parser(FlaskParser):
    """Bad arguments are a 400 Bad Request, like every other bad input of this API."""

    DEFAULT_VALIDATION_STATUS = 400


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
        instruments,
        passwords,
        transfers,
        transports,
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
        transfers,
        audit,
    )
    for module in modules:
        api.register_blueprint(module.blp)
    return [module.blp for module in modules]
