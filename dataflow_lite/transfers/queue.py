"""The durable transfer queue: every upload becomes a transfer record that workers carry out.

The catalog's ``transfer`` table is the truth: state (``queued -> running -> verifying -> done |
failed``), attempts, the last error in plain words, bytes moved, the adapter's handle and memo.
huey (SQLite storage in the instance folder; its SQL storage over PostgreSQL later) wakes the
workers and schedules retries; a worker claims a record with one conditional UPDATE, so no two
workers run the same transfer, and holds a lease that it renews while it works. A transfer whose
worker died (a crash, ``kill -9``) is found by the sweep when its lease runs out and resumes:
adapters make a repeated submit safe. The staged copy is deleted only after the destination's
checksum matched; a failed transfer keeps it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from huey import SqliteHuey, crontab
from sqlalchemy import CursorResult, Engine, Update, and_, or_, update
from sqlmodel import Session, col, select

from dataflow_lite.adapter import (
    DONE,
    FAILED,
    PERMANENT_ERRNOS,
    QUEUED,
    RUNNING,
    VERIFYING,
    AdapterError,
    Adapters,
    TransferJob,
)
from dataflow_lite.store import credentials, layout
from dataflow_lite.store.catalog import metadata_json
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.instance_keys import PasswordCipher
from dataflow_lite.store.models import Dataset, DatasetFile, Endpoint, Transfer, row_id, utcnow
from dataflow_lite.transfers.debris import remove_expired_uploads

log = logging.getLogger(__name__)

ACTIVE = (RUNNING, VERIFYING)
MAX_BACKOFF = timedelta(hours=1)


def _rows_changed(session: Session, statement: Update) -> int:
    """Run an UPDATE in the session; how many rows it changed."""
    result = session.execute(statement)
    # An UPDATE without RETURNING always gives a CursorResult; Session.execute is typed wider.
    assert isinstance(result, CursorResult)
    return result.rowcount


class TransferQueue:
    """Creates transfer records, and runs them in huey workers."""

    def __init__(
        self,
        engine: Engine,
        adapters: Adapters,
        cipher: PasswordCipher,
        queue_file: Path,
        settings: dict[str, Any],
    ) -> None:
        self.engine = engine
        self.adapters = adapters
        self.cipher = cipher
        self.settings = settings
        self.huey = SqliteHuey(
            "dataflow-lite",
            filename=str(queue_file),
            results=False,
            immediate=settings["queue_immediate"],
        )
        self._run_task = self.huey.task(name="run_transfer")(self.run)
        self._sweep_task = self.huey.task(name="sweep_once")(self.sweep)
        self.huey.periodic_task(crontab(minute="*"), name="sweep")(self.sweep)
        self.huey.periodic_task(crontab(minute="*"), name="expire_uploads")(self.expire_uploads)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings["transfer_lease_seconds"])

    # Creating and waking transfers -----------------------------------------------------------

    def add(
        self,
        session: Session,
        dataset: Dataset,
        endpoint: Endpoint,
        file: DatasetFile | None = None,
        staged: Path | None = None,
    ) -> Transfer:
        """Record a transfer of ``file`` (or of the dataset's metadata.json) in the session."""
        transfer = Transfer(
            kind="file" if file else "metadata",
            dataset_id=row_id(dataset),
            file_id=row_id(file) if file else None,
            endpoint_id=endpoint.id,
            user_id=dataset.creator_id,
            adapter=endpoint.adapter,
            staged_path=str(staged) if staged else None,
        )
        session.add(transfer)
        session.flush()
        return transfer

    def wake(self, transfer_id: int, delay: float = 0) -> None:
        """Ask a worker to run the transfer (after ``delay`` seconds); call after committing."""
        if delay > 0 and not self.huey.immediate:
            self._run_task.schedule((transfer_id,), delay=delay)
        else:
            self._run_task(transfer_id)

    def sweep(self) -> int:
        """Wake every transfer that is due: queued ones, and running ones whose worker is gone."""
        now = utcnow()
        with session_scope(self.engine) as session:
            due = session.exec(select(Transfer.id).where(self._claimable(now))).all()
        for transfer_id in due:
            assert transfer_id is not None  # a primary key read back from the table
            self.wake(transfer_id)
        return len(due)

    def expire_uploads(self) -> None:
        """Remove expired resumable uploads and their bytes (a periodic task, every minute)."""
        for line in remove_expired_uploads(self.engine, self.adapters.context.staging_dir):
            log.info("%s", line)

    def sweep_later(self, delay: float) -> None:
        """Sweep once more after ``delay`` seconds."""
        self._sweep_task.schedule(delay=delay)

    @staticmethod
    def _claimable(now: Any) -> Any:
        return and_(
            col(Transfer.next_attempt_at) <= now,
            or_(
                col(Transfer.state) == QUEUED,
                and_(col(Transfer.state).in_(ACTIVE), col(Transfer.lease_until) <= now),
            ),
        )

    # Running one transfer --------------------------------------------------------------------

    def _claim(self, transfer_id: int) -> Transfer | None:
        """Take the transfer if it is due and no live worker holds it; None otherwise."""
        now = utcnow()
        with session_scope(self.engine) as session:
            claimed = _rows_changed(
                session,
                update(Transfer)
                .where(col(Transfer.id) == transfer_id, self._claimable(now))
                .values(
                    state=RUNNING,
                    lease_until=now + self.lease,
                    claim=uuid.uuid4().hex,
                    updated_at=now,
                ),
            )
            return session.get(Transfer, transfer_id) if claimed else None

    def _save(self, transfer: Transfer, **values: Any) -> bool:
        """Record the run's progress, unless its claim is void (cancelled, or taken over)."""
        with session_scope(self.engine) as session:
            return bool(
                _rows_changed(
                    session,
                    update(Transfer)
                    .where(
                        col(Transfer.id) == transfer.id,
                        col(Transfer.claim) == transfer.claim,
                        col(Transfer.state).in_(ACTIVE),
                    )
                    .values(updated_at=utcnow(), **values),
                )
            )

    @contextmanager
    def _leased(self, transfer: Transfer) -> Iterator[None]:
        """Renew the transfer's lease while the block runs, so no sweep takes it over."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease.total_seconds() / 3):
                try:
                    if not self._save(transfer, lease_until=utcnow() + self.lease):
                        return  # cancelled or taken over: nothing left to hold
                except Exception:  # a busy database now must not end the lease for good
                    log.exception("renewing the lease of transfer %s", transfer.id)

        renewer = threading.Thread(target=renew, name=f"lease-{transfer.id}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()

    def run(self, transfer_id: int) -> None:
        """Carry the transfer one step further (a huey task): submit, follow, verify."""
        transfer = self._claim(transfer_id)
        if transfer is None:
            return
        if transfer.kind == "metadata" and self._metadata_in_progress(transfer):
            # One metadata.json writer per dataset at a time, so the newest content lands last.
            self._save(transfer, state=QUEUED, lease_until=None, next_attempt_at=utcnow())
            self.wake(transfer_id, delay=1)
            return
        try:
            with self._leased(transfer):
                self._step(transfer)
        except AdapterError as error:
            self._failed(transfer, str(error), error.permanent)
        except Exception as error:  # a bug must not leave the transfer claimed forever
            log.exception("transfer %s", transfer_id)
            # An OSError an adapter let through is as permanent as its errno says.
            permanent = isinstance(error, OSError) and error.errno in PERMANENT_ERRNOS
            self._failed(transfer, f"internal error: {error}", permanent=permanent)

    def _step(self, transfer: Transfer) -> None:
        with session_scope(self.engine) as session:
            endpoint = session.get(Endpoint, transfer.endpoint_id)
            dataset = session.get(Dataset, transfer.dataset_id)
            file = session.get(DatasetFile, transfer.file_id) if transfer.file_id else None
            user_credentials = credentials.load(
                session, self.cipher, transfer.user_id, transfer.endpoint_id
            )
            assert endpoint is not None and dataset is not None
            content = metadata_json(session, dataset) if file is None else b""
        adapter = self.adapters.for_endpoint(endpoint.adapter, endpoint.options)
        if file is None:
            target = layout.metadata_target(dataset.folder)
            adapter.write_file(target, content, user_credentials)
            self._save(transfer, state=DONE, finished_at=utcnow(), last_error=None)
            return

        memo = dict(transfer.memo)

        def remember(key: str, value: Any) -> None:
            memo[key] = value
            self._save(transfer, memo=dict(memo))

        relative = layout.PurePosixPath(file.relative_path)
        job = TransferJob(
            staged=Path(transfer.staged_path or ""),
            target=layout.file_target(dataset.folder, relative, file.name),
            sha256=file.sha256 or "",
            size=file.file_length or 0,
            credentials=user_credentials,
            memo=memo,
            remember=remember,
        )
        handle = transfer.handle
        if handle is None:
            handle = adapter.submit(job)
            self._save(transfer, handle=handle)
        status = adapter.status(job, handle)
        self._save(transfer, bytes_moved=status.bytes_moved)
        if status.state == FAILED:
            raise AdapterError(status.error or "the transfer failed", permanent=status.permanent)
        if status.state != DONE:
            # Still moving (a Globus task): look again later, without counting an attempt.
            poll = self.settings["transfer_poll_seconds"]
            later = utcnow() + timedelta(seconds=poll)
            self._save(transfer, state=RUNNING, lease_until=utcnow(), next_attempt_at=later)
            self.wake(row_id(transfer), delay=poll)
            return
        self._save(transfer, state=VERIFYING)
        if not adapter.verify(job, handle):
            raise AdapterError(
                f"the checksum of {job.target} at the destination does not match the upload's",
                permanent=True,
            )
        # Queue metadata.json's rewrite first: whoever sees this file done finds it coming.
        self.refresh_metadata(row_id(dataset))
        done = self._save(
            transfer,
            state=DONE,
            finished_at=utcnow(),
            last_error=None,
            staged_path=None,
            bytes_moved=job.size,
        )
        # Only then the staged copy goes: a crash in between leaves a stray staged file, never a
        # transfer whose retry cannot find its bytes.
        if done:
            job.staged.unlink(missing_ok=True)

    def _metadata_in_progress(self, transfer: Transfer) -> bool:
        """Whether another metadata.json write of the same dataset holds a live lease."""
        with session_scope(self.engine) as session:
            return (
                session.exec(
                    select(Transfer.id).where(
                        Transfer.dataset_id == transfer.dataset_id,
                        Transfer.kind == "metadata",
                        Transfer.id != transfer.id,
                        col(Transfer.state).in_(ACTIVE),
                        col(Transfer.lease_until) > utcnow(),
                    )
                ).first()
                is not None
            )

    def refresh_metadata(self, dataset_id: int) -> None:
        """Queue a rewrite of the dataset's metadata.json, unless one is already waiting."""
        with session_scope(self.engine) as session:
            waiting = session.exec(
                select(Transfer.id).where(
                    Transfer.dataset_id == dataset_id,
                    Transfer.kind == "metadata",
                    Transfer.state == QUEUED,
                )
            ).first()
            if waiting is not None:
                return
            dataset = session.get(Dataset, dataset_id)
            endpoint = session.get(Endpoint, dataset.endpoint_id) if dataset else None
            if dataset is None or endpoint is None:
                return  # the dataset is gone: no metadata.json to write
            transfer = self.add(session, dataset, endpoint)
        self.wake(row_id(transfer))

    def _failed(self, transfer: Transfer, message: str, permanent: bool) -> None:
        attempts = transfer.attempts + 1
        if permanent or attempts >= self.settings["transfer_max_attempts"]:
            self._save(
                transfer,
                state=FAILED,
                attempts=attempts,
                last_error=message,
                permanent=permanent,
                finished_at=utcnow(),
                lease_until=None,
            )
            return
        delay = min(
            timedelta(seconds=self.settings["transfer_retry_seconds"] * 2 ** (attempts - 1)),
            MAX_BACKOFF,
        )
        self._save(
            transfer,
            state=QUEUED,
            attempts=attempts,
            last_error=message,
            next_attempt_at=utcnow() + delay,
            lease_until=None,
            handle=None,  # the next attempt submits again (adapters resume from their memo)
        )
        self.wake(row_id(transfer), delay=delay.total_seconds())

    # What users and admins do ------------------------------------------------------------------

    def retry(self, transfer_id: int) -> bool:
        """Queue a failed transfer again from scratch; False if it had not failed."""
        now = utcnow()
        with session_scope(self.engine) as session:
            retried = _rows_changed(
                session,
                update(Transfer)
                .where(
                    col(Transfer.id) == transfer_id,
                    col(Transfer.state) == FAILED,
                    # A cancelled run may still be winding down: wait until its lease lapses.
                    or_(col(Transfer.lease_until).is_(None), col(Transfer.lease_until) <= now),
                )
                .values(
                    state=QUEUED,
                    attempts=0,
                    handle=None,
                    permanent=False,
                    next_attempt_at=utcnow(),
                    finished_at=None,
                    updated_at=utcnow(),
                ),
            )
        if retried:
            self.wake(transfer_id)
        return bool(retried)

    def cancel(self, transfer_id: int) -> bool:
        """Stop a transfer that is not done yet; it fails with "cancelled" and keeps its file."""
        now = utcnow()
        with session_scope(self.engine) as session:
            cancelled = _rows_changed(
                session,
                update(Transfer)
                .where(col(Transfer.id) == transfer_id, col(Transfer.state).not_in((DONE, FAILED)))
                .values(
                    state=FAILED,
                    permanent=True,
                    last_error="cancelled",
                    finished_at=now,
                    updated_at=now,
                ),
            )
            transfer = session.get(Transfer, transfer_id)
            endpoint = session.get(Endpoint, transfer.endpoint_id) if transfer else None
        if not cancelled or transfer is None:
            return False
        # A worker still running it finds its claim void at its next save, and stops there.
        if transfer.handle and endpoint is not None:
            adapter = self.adapters.for_endpoint(endpoint.adapter, endpoint.options)
            adapter.cancel(self._job_stub(transfer), transfer.handle)
        return True

    @staticmethod
    def _job_stub(transfer: Transfer) -> TransferJob:
        return TransferJob(
            staged=Path(transfer.staged_path or ""),
            target=layout.PurePosixPath(),
            sha256="",
            size=0,
            credentials=None,
            memo=dict(transfer.memo),
        )
