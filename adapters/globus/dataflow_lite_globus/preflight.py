"""The Globus adapter's live preflight: reachable, authenticated, collection found, writable."""

from __future__ import annotations

from typing import Any

import globus_sdk

from dataflow_lite.adapter import AdapterError, Check

from .errors import globus_errors

# Directory whose creation proves that the client may write under the endpoint's path.
PROBE_DIR = ".dataflow-lite-probe"


def _tolerating_exists(call: Any, *args: Any) -> bool:
    """Run a Globus mkdir; True if it created the directory, False if it was there already."""
    try:
        call(*args)
    except globus_sdk.TransferAPIError as error:
        if error.code and error.code.endswith("Exists"):
            return False
        raise
    return True


def failed_checks(error: AdapterError) -> list[Check]:
    """The preflight lines up to the first that failed, from the error that stopped it."""
    cause = error.__cause__
    if isinstance(cause, globus_sdk.NetworkError):
        return [Check("reachable", False, str(error))]
    if not isinstance(cause, globus_sdk.GlobusAPIError):
        return [Check("configured", False, str(error))]  # a setting is missing
    reached = Check("reachable", True, "Globus answered")
    if cause.http_status == 401 or isinstance(cause, globus_sdk.AuthAPIError):
        return [reached, Check("authenticated", False, str(error))]
    authenticated = Check("authenticated", True, "the server's Globus client holds a token")
    return [reached, authenticated, Check("collection found", False, str(error))]


def preflight(client: globus_sdk.TransferClient, collection: str, base: str) -> list[Check]:
    """Look the collection up and make a probe directory under ``base`` through Globus.

    Writable means the probe directory could be made. Free space is reported as unknown:
    Globus does not tell a collection's free space.
    """
    try:
        with globus_errors(f"look up the collection {collection}"):
            found = client.get_endpoint(collection)
    except AdapterError as error:
        return failed_checks(error)
    checks = [
        Check("reachable", True, "Globus Transfer answered"),
        Check("authenticated", True, "the server's Globus client holds a Transfer token"),
        Check("collection found", True, f"{found.get('display_name')}"),
    ]
    try:
        with globus_errors(f"create directories under {base}"):
            _tolerating_exists(client.operation_mkdir, collection, base)
            made = _tolerating_exists(client.operation_mkdir, collection, f"{base}/{PROBE_DIR}")
    except AdapterError as error:
        checks.append(Check("writable", False, str(error)))
    else:
        checks.append(
            Check(
                "writable",
                True,
                f"created {base}/{PROBE_DIR}"
                if made
                else f"{base}/{PROBE_DIR} exists: an earlier check created it",
            )
        )
    checks.append(Check("free space", True, "unknown: Globus does not report free space"))
    return checks
