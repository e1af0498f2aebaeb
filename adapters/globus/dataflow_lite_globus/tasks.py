"""A Globus Transfer task document, read as a dataflow-lite transfer status."""

from __future__ import annotations

from typing import Any

from dataflow_lite.adapter import DONE, FAILED, RUNNING, TransferStatus

from .errors import names_a_permanent_problem

# Fields of the task document worth showing next to a transfer (in ``details``).
SHOWN_FIELDS = (
    "status",
    "nice_status",
    "nice_status_short_description",
    "files_skipped",
    "faults",
    "verify_checksum",
)


def _details(task: dict[str, Any]) -> dict[str, Any]:
    return {key: task[key] for key in SHOWN_FIELDS if task.get(key) is not None}


def _why_failed(task: dict[str, Any]) -> tuple[str, bool]:
    """A FAILED task's reason in plain words, and whether only a person can fix it."""
    fatal = task.get("fatal_error") or {}
    code = fatal.get("code") or task.get("nice_status") or "unknown"
    description = fatal.get("description") or task.get("nice_status_short_description")
    words = f"{description} ({code})" if description else code
    # A cancelled task was stopped on purpose (by us, a user or a collection's manager).
    permanent = names_a_permanent_problem(code) or code == "CANCELED"
    return f"the Globus task {task.get('task_id')} failed: {words}", permanent


def _why_inactive(task: dict[str, Any]) -> str:
    reason = task.get("nice_status_short_description") or task.get("nice_status") or "no reason"
    return f"the Globus task {task.get('task_id')} stopped and waits for someone to act: {reason}"


def task_status(task: dict[str, Any]) -> TransferStatus:
    """ACTIVE is running, SUCCEEDED done, FAILED and INACTIVE failed, with the reason in words."""
    state = task.get("status")
    moved = int(task.get("bytes_transferred") or 0)
    details = _details(task)
    if state == "SUCCEEDED":
        return TransferStatus(DONE, bytes_moved=moved, details=details)
    if state == "FAILED":
        error, permanent = _why_failed(task)
        return TransferStatus(
            FAILED, bytes_moved=moved, error=error, permanent=permanent, details=details
        )
    if state == "INACTIVE":
        # Globus makes a task inactive when credentials or consent lapsed: no retry of ours
        # can mend that, a person must.
        return TransferStatus(
            FAILED, bytes_moved=moved, error=_why_inactive(task), permanent=True, details=details
        )
    # ACTIVE, including "Queued" and tasks that Globus is retrying after a fault (their
    # nice_status says why, in ``details``).
    return TransferStatus(RUNNING, bytes_moved=moved, details=details)
