"""What users and administrators do to a transfer: retry it, cancel it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import CursorResult, Update, update
from sqlmodel import Session, col, select

from dataflow_lite.adapter import DONE, FAILED, QUEUED, TransferJob
from dataflow_lite.store import layout
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.models import Endpoint, Transfer, utcnow

if TYPE_CHECKING:
    from dataflow_lite.transfers.queue import TransferQueue


def rows_changed(session: Session, statement: Update) -> int:
    """Run an UPDATE in the session; how many rows it changed."""
    result = session.execute(statement)
    # An UPDATE without RETURNING always gives a CursorResult; Session.execute is typed wider.
    assert isinstance(result, CursorResult)
    return result.rowcount


def retry(queue: TransferQueue, transfer_id: int) -> bool:
    """Queue a failed transfer again from scratch; False if it had not failed.

    A cancelled run that is still stopping keeps its lease: the transfer starts when that
    run releases it (or, if its worker died, when the sweep finds the lease run out).
    """
    now = utcnow()
    with session_scope(queue.engine) as session:
        # Locked, so a run releasing its lease this instant either sees the retry or is seen.
        lease = session.exec(
            select(Transfer.lease_until).where(Transfer.id == transfer_id).with_for_update()
        )
        leased = (lease.first() or now) > now
        retried = rows_changed(
            session,
            update(Transfer)
            .where(col(Transfer.id) == transfer_id, col(Transfer.state) == FAILED)
            .values(
                state=QUEUED,
                attempts=0,
                handle=None,
                permanent=False,
                bytes_moved=0,
                next_attempt_at=utcnow(),
                finished_at=None,
                updated_at=utcnow(),
            ),
        )
    if retried and not leased:
        queue.wake(transfer_id)
    return bool(retried)


def cancel(queue: TransferQueue, transfer_id: int) -> bool:
    """Stop a transfer that is not done yet; it fails with "cancelled" and keeps its staged
    file. A worker running it notices within ``transfer_progress_seconds`` and stops its
    adapter, which removes what it wrote; what a handle names (a Globus task) is cancelled
    here, unless other files' transfers still share it. Nothing is kept to resume: a retry
    starts afresh."""
    now = utcnow()
    with session_scope(queue.engine) as session:
        transfer = session.get(Transfer, transfer_id, with_for_update=True)
        endpoint = session.get(Endpoint, transfer.endpoint_id) if transfer else None
        # Read before the UPDATE, which clears them (in the session's copy too).
        handle, stub = (transfer.handle, _job_stub(transfer)) if transfer else (None, None)
        cancelled = rows_changed(
            session,
            update(Transfer)
            .where(col(Transfer.id) == transfer_id, col(Transfer.state).not_in((DONE, FAILED)))
            .values(
                state=FAILED,
                permanent=True,
                last_error="cancelled",
                handle=None,
                memo={},
                finished_at=now,
                updated_at=now,
            ),
        )
        # A handle that other files' transfers share (one Globus task for a batch) goes on.
        shared = (
            handle is not None
            and session.exec(
                select(Transfer.id).where(
                    Transfer.endpoint_id == (endpoint.id if endpoint else None),
                    Transfer.handle == handle,
                    col(Transfer.state).not_in((DONE, FAILED)),
                )
            ).first()
        )
    if not cancelled:
        return False
    if handle and stub and endpoint is not None and shared is None:
        adapter = queue.adapters.for_endpoint(endpoint.adapter, endpoint.options)
        adapter.cancel(stub, handle)
    return True


def _job_stub(transfer: Transfer) -> TransferJob:
    return TransferJob(
        staged=Path(transfer.staged_path or ""),
        target=layout.PurePosixPath(),
        sha256="",
        size=0,
        credentials=None,
        memo=dict(transfer.memo),
    )
