"""Globus errors in plain words, and whether retrying can mend them.

Every call to Globus goes through :func:`globus_errors`, which turns the SDK's exceptions into
:class:`~dataflow_lite.adapter.AdapterError`: permanent for refused credentials, missing consent
or permission (401, 403), a missing collection or path (404), an exhausted quota and other
malformed requests (4xx); transient for Globus's own failures (5xx, 408, 409, 429) and the
network.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import globus_sdk

from dataflow_lite.adapter import AdapterError

# Task and error codes (Transfer's ``fatal_error.code``, ``nice_status``, API ``code``) that
# name a problem only a person can fix: the same words in any of them mean the same thing.
PERMANENT_WORDS = ("permission", "denied", "quota", "not_found", "notfound", "auth", "consent")

# 4xx statuses that say "not now" rather than "never".
TRANSIENT_CLIENT_STATUSES = {408, 409, 429}


def names_a_permanent_problem(code: str | None) -> bool:
    """Whether a Globus code (``PERMISSION_DENIED``, ``QuotaExceeded``...) needs a person."""
    lowered = (code or "").lower()
    return any(word in lowered for word in PERMANENT_WORDS)


def is_permanent(error: globus_sdk.GlobusAPIError) -> bool:
    """Whether retrying the request that raised ``error`` cannot help."""
    if names_a_permanent_problem(error.code) or "quota" in plain_message(error).lower():
        return True
    status = error.http_status
    return 400 <= status < 500 and status not in TRANSIENT_CLIENT_STATUSES


def plain_message(error: globus_sdk.GlobusAPIError) -> str:
    """The first line of Globus's message: the rest is a GridFTP transcript."""
    message = (error.message or error.http_reason or "").strip()
    return message.splitlines()[0] if message else "no message"


def consent_scopes(error: globus_sdk.GlobusAPIError) -> list[str] | None:
    """The scopes a ``ConsentRequired`` error asks for, or None for any other error."""
    consent = error.info.consent_required
    if consent or error.code == "ConsentRequired":
        return list(consent.required_scopes or [])
    return None


def describe(error: globus_sdk.GlobusAPIError) -> str:
    """``error`` in words a user can act on, with the code an admin can look up."""
    scopes = consent_scopes(error)
    if scopes is not None:
        wanted = ", ".join(scopes) or "none named"
        return (
            f"consent_required: the Globus client needs consent for the scopes {wanted} "
            f"(HTTP {error.http_status})"
        )
    return f"{plain_message(error)} ({error.http_status} {error.code})"


@contextmanager
def globus_errors(what: str) -> Iterator[None]:
    """Turn the SDK's errors raised while doing ``what`` into AdapterError."""
    try:
        yield
    except globus_sdk.GlobusAPIError as error:
        raise AdapterError(
            f"Globus refused to {what}: {describe(error)}", permanent=is_permanent(error)
        ) from error
    except globus_sdk.NetworkError as error:
        raise AdapterError(f"Globus could not be reached to {what}: {error}") from error
