"""What a service refuses, as plain values; each face maps them once (JSON, HTML, a CLI line).

No HTTP status lives here: the API maps NotFound to 404, Forbidden to 403, Invalid to 400,
TooLarge to 413 and Conflict to 409 (``dataflow_lite.api.errors``); the web pages show Invalid
(TooLarge too) beside the form's fields; the CLI prints the message on one line and exits 1.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A use case that cannot be done; ``message`` in plain words, ``errors`` by field."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(ServiceError):
    """The object does not exist, or the identity may not know that it does."""


class Forbidden(ServiceError):
    """The identity may not do this."""


class Invalid(ServiceError):
    """The input is wrong; ``errors`` maps each field to what is wrong with it."""


class TooLarge(Invalid):
    """The input is over one of the server's configured limits; the message names the limit."""


class Conflict(ServiceError):
    """The input is fine but the catalog's state forbids it (a name taken, a path in use)."""


def invalid(field: str, message: str, summary: str | None = None) -> Invalid:
    """An Invalid error about one field, its message also the error's summary."""
    return Invalid(summary or message, {field: [message]})
