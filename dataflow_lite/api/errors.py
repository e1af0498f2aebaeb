"""The one JSON error shape of the API, and the one handler that produces it.

Every error, ours or Werkzeug's or an unexpected exception, answers with flask-smorest's shape:
``{"code": 404, "status": "Not Found", "message": "...", "errors": {...}}``. The services' errors
are mapped to statuses here and nowhere else. Outside ``/api/``, the web pages may answer with
a page of their own instead (``PAGE_ERROR_HANDLER``).
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import current_app, request
from werkzeug.exceptions import HTTPException, InternalServerError

from dataflow_lite.faces import API_PATH, PAGE_ERROR_HANDLER
from dataflow_lite.services.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ServiceError,
    TooLarge,
)

STATUS_OF = {NotFound: 404, Forbidden: 403, Invalid: 400, TooLarge: 413, Conflict: 409}


class DataflowError(HTTPException):
    """An error with an HTTP status, a message in plain words and optional field errors."""

    def __init__(self, status: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(description=message)
        self.code = status
        self.data: dict[str, Any] = {"message": message, "errors": errors or {}}


def http_error(error: ServiceError) -> DataflowError:
    """A service's error as the HTTP error that says the same."""
    status = next(STATUS_OF[kind] for kind in type(error).__mro__ if kind in STATUS_OF)
    return DataflowError(status, error.message, error.errors)


class Api(flask_smorest.Api):
    """flask-smorest's Api whose error payload always carries ``message`` and ``errors``."""

    def _register_error_handlers(self) -> None:
        super()._register_error_handlers()
        self._app.register_error_handler(ServiceError, self.handle_service_error)
        self._app.register_error_handler(Exception, self.handle_unexpected_exception)

    def handle_service_error(self, error: ServiceError) -> Any:
        return self.handle_http_exception(http_error(error))

    def handle_http_exception(self, error: HTTPException) -> Any:
        page = current_app.extensions.get(PAGE_ERROR_HANDLER)
        if page is not None and not request.path.startswith(API_PATH):
            if (response := page(error)) is not None:
                return response
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

    def handle_unexpected_exception(self, error: Exception) -> Any:
        if isinstance(error, HTTPException):
            return self.handle_http_exception(error)
        current_app.logger.exception("unexpected error", exc_info=error)
        return self.handle_http_exception(InternalServerError())
