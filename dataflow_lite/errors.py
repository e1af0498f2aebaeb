"""The one JSON error shape of the API, and the one handler that produces it.

Every error, ours or Werkzeug's or an unexpected exception, answers with flask-smorest's shape:
``{"code": 404, "status": "Not Found", "message": "...", "errors": {...}}``.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import current_app
from werkzeug.exceptions import HTTPException, InternalServerError


class DataflowError(HTTPException):
    """An error with an HTTP status, a message in plain words and optional field errors."""

    def __init__(self, status: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(description=message)
        self.code = status
        self.data = {"message": message, "errors": errors or {}}


class Api(flask_smorest.Api):
    """flask-smorest's Api whose error payload always carries ``message`` and ``errors``."""

    def _register_error_handlers(self) -> None:
        super()._register_error_handlers()
        self._app.register_error_handler(Exception, self.handle_unexpected_exception)

    def handle_http_exception(self, error: HTTPException):  # type: ignore[no-untyped-def]
        payload, code, headers = super().handle_http_exception(error)
        # Werkzeug's own headers matter (Allow on a 405, WWW-Authenticate on a 401).
        headers = {
            **{k: v for k, v in error.get_headers() if k.lower() != "content-type"},
            **(headers or {}),
        }
        if "message" not in payload:
            payload["message"] = (
                "Invalid request: see errors."
                if payload.get("errors")
                else (error.description or error.name)
            )
        payload.setdefault("errors", {})
        return payload, code, headers

    def handle_unexpected_exception(self, error: Exception):  # type: ignore[no-untyped-def]
        if isinstance(error, HTTPException):
            return self.handle_http_exception(error)
        current_app.logger.exception("unexpected error", exc_info=error)
        return self.handle_http_exception(InternalServerError())
