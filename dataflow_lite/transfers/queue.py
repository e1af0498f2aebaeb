"""The durable transfer queue: every upload becomes a transfer record that workers carry out.

The catalog's ``transfer`` table is the truth: state (``queued -> running -> verifying -> done |
failed``), attempts, the last error in plain words, bytes moved, the adapter's handle and memo.
huey (SQLite storage in each host's instance folder) wakes the workers and schedules retries;
a message for a transfer staged on another host is passed on to it (:mod:`.wakeups`). A worker
claims a record it has locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, where the queue's own
writes lock only their rows; SQLite's one write lock elsewhere), so no two workers run the same
transfer, and holds a lease that it renews while it works (:mod:`.watch`,
which also stores the bytes moved and stops the adapter when the transfer is cancelled). A
transfer whose worker died (a crash, ``kill -9``) is found by the sweep when its lease runs out and
resumes: adapters make a repeated submit safe. The staged copy is deleted only after the
destination's checksum matched; a failed transfer keeps it.

Each transfer has at most one message waiting in huey: the sweep wakes only due transfers that
have none, and a message that arrives before its transfer is due schedules itself for then. A
cancelled run keeps its lease until it has stopped and removed what it wrote; a retry queues the
transfer at once, and the run starts when that lease is released. A dataset's ``metadata.json``
is rewritten once its files stop finishing for ``metadata_settle_seconds``: a rewrite that is
queued and not yet running absorbs later requests and is pushed back by them.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from huey import SqliteHuey, crontab
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from dataflow_lite.adapter import (
    DONE,
    FAILED,
    PERMANENT_ERRNOS,
    QUEUED,
    RUNNING,
    AdapterError,
    Adapters,
)
from dataflow_lite.store.db import ROWS, session_scope
from dataflow_lite.store.instance_keys import PasswordCipher
from dataflow_lite.store.models import Dataset, DatasetFile, Endpoint, Transfer, row_id, utcnow
from dataflow_lite.transfers import actions, batches, hosts, metadata_file, wakeups
from dataflow_lite.transfers.actions import rows_changed
from dataflow_lite.transfers.claims import ACTIVE, claimable, host_name, taken
from dataflow_lite.transfers.debris import remove_expired_uploads
from dataflow_lite.transfers.watch import watched

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)


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
        #: Transfers of files staged here carry this name; only this host's workers run them.
        self.host = host_name(settings)
        self.place = hosts.place(queue_file.parent)  # the queue's file is in the instance folder
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
        flush: bool = True,
    ) -> Transfer:
        """Record a transfer of ``file`` (or metadata.json) in the session; its id once flushed."""
        transfer = batches.new_transfer(
            self.host, dataset, endpoint, row_id(file) if file else None, staged
        )
        session.add(transfer)
        if flush:
            session.flush()
        return transfer

    def wake(self, transfer_id: int, delay: float = 0) -> None:
        """Ask a worker to run the transfer (after ``delay`` seconds); call after committing."""
        if delay > 0 and not self.huey.immediate:
            self._run_task.schedule((transfer_id,), delay=delay)
        else:
            self._run_task(transfer_id)

    def sweep(self) -> int:
        """Wake every transfer that is due and has no message waiting in huey: queued ones, and
        running ones whose worker is gone, after checking this host in (:mod:`.hosts`). How
        many it woke."""
        lost_after = timedelta(seconds=self.settings["host_lost_seconds"])
        hosts.check_in(self.engine, self.host, self.place, lost_after)
        now = utcnow()
        with session_scope(self.engine, write=False) as session:
            due = session.exec(select(Transfer.id).where(self._claimable(now))).all()
        waiting = self._waiting()
        woken = [transfer_id for transfer_id in due if transfer_id not in waiting]
        for transfer_id in woken:
            assert transfer_id is not None  # a primary key read back from the table
            self.wake(transfer_id)
        return len(woken)

    def _waiting(self) -> set[int]:
        """The transfers that a message in huey (due now or scheduled) will run."""
        messages = [*self.huey.pending(), *self.huey.scheduled()]
        return {message.args[0] for message in messages if message.name == self._run_task.name}

    def expire_uploads(self) -> None:
        """Remove expired resumable uploads and their bytes (a periodic task, every minute)."""
        for line in remove_expired_uploads(self.engine, self.adapters.context.staging_dir):
            log.info("%s", line)

    def sweep_later(self, delay: float) -> None:
        """Sweep once more after ``delay`` seconds."""
        self._sweep_task.schedule(delay=delay)

    def _claimable(self, now: Any) -> Any:
        return claimable(now, self.host)

    # Running a transfer, or a batch of them ----------------------------------------------------

    def _claim(self, transfer_id: int) -> list[Transfer]:
        """Take the transfer if it is due and no live worker holds it, with the other due files
        of its dataset when its adapter batches (:mod:`.batches`); the transfer first. Empty if
        it was not taken."""
        now = utcnow()
        claim = {
            "state": RUNNING,
            "lease_until": now + self.lease,
            "claim": uuid.uuid4().hex,
            "updated_at": now,
        }
        with session_scope(self.engine, write=ROWS) as session:
            # A transfer another worker is claiming this instant is skipped, not waited for.
            claimed = session.exec(
                select(Transfer.id)
                .where(col(Transfer.id) == transfer_id, self._claimable(now))
                .with_for_update(skip_locked=True)
            ).first()
            if claimed is not None:
                session.execute(
                    update(Transfer).where(col(Transfer.id) == transfer_id).values(**claim)
                )
            transfer = session.get(Transfer, transfer_id)
            if claimed is None and transfer is not None and self._elsewhere(transfer, now):
                wakeups.forward(session, transfer.staged_on or "", transfer_id)
            batch = [transfer] if claimed is not None and transfer is not None else []
            if batch and transfer is not None and self._batches(transfer):
                others = batches.companions(session, transfer, self._claimable(now), self.settings)
                session.execute(
                    update(Transfer).where(col(Transfer.id).in_(others)).values(**claim)
                )
                batch += session.exec(
                    select(Transfer).where(col(Transfer.id).in_(others)).order_by(col(Transfer.id))
                ).all()
        mine = transfer is not None and transfer.staged_on in (None, self.host)
        if claimed is None and mine and transfer is not None and transfer.state == QUEUED:
            self._wake_when_due(transfer.id, transfer.next_attempt_at)
        return batch

    def _elsewhere(self, transfer: Transfer, now: datetime) -> bool:
        """Whether the transfer is due and waits for the host that staged it, not this one."""
        return (
            transfer.staged_on not in (None, self.host)
            and transfer.state == QUEUED
            and transfer.next_attempt_at <= now
        )

    def listen(self) -> threading.Event:
        """Take the wake-ups other hosts pass on to this one (:mod:`.wakeups`; a worker
        process calls it once), until the event returned is set; each (re)connection sweeps
        for what was sent meanwhile."""
        return wakeups.listen(self.engine, self.host, self._wake_unless_waiting, self.sweep)

    def _wake_unless_waiting(self, transfer_id: int) -> None:
        if transfer_id not in self._waiting():
            self.wake(transfer_id)

    def _batches(self, transfer: Transfer) -> bool:
        """Whether the transfer is a file whose adapter moves files in batches."""
        return transfer.kind == "file" and self.adapter_batches(transfer.adapter)

    def adapter_batches(self, adapter: str) -> bool:
        """Whether the adapter of that name moves files in batches."""
        try:
            return self.adapters.get_class(adapter).batches
        except LookupError:
            return False

    def _wake_when_due(self, transfer_id: int | None, due: datetime) -> None:
        """Schedule a message for a queued transfer whose message came before it was due."""
        wait = (due - utcnow()).total_seconds()
        if wait > 0 and transfer_id is not None and not self.huey.immediate:
            self.wake(transfer_id, delay=wait)

    def _save(self, transfer: Transfer, **values: Any) -> bool:
        """Record the run's progress, unless its claim is void (cancelled, or taken over)."""
        return bool(self._save_each([transfer], {row_id(transfer): values}))

    def _save_each(self, batch: list[Transfer], values: dict[int, dict[str, Any]]) -> set[int]:
        """Record each transfer's values in one transaction, for those of ``batch`` whose
        claim still holds; which ones those are."""
        claims = {row_id(transfer): transfer.claim for transfer in batch}
        now = utcnow()
        with session_scope(self.engine, write=ROWS) as session:
            rows = session.exec(
                select(Transfer.id, Transfer.claim)
                .where(col(Transfer.id).in_(list(claims)), col(Transfer.state).in_(ACTIVE))
                .order_by(col(Transfer.id))  # rows locked in one order: no deadlock
                .with_for_update()
            ).all()
            held = {found for found, claim in rows if found is not None and claim == claims[found]}
            # One UPDATE for each set of values (a batch's files mostly share theirs).
            alike: dict[str, tuple[dict[str, Any], list[int]]] = {}
            for transfer_id in sorted(held & set(values)):
                key = repr(sorted(values[transfer_id].items()))
                alike.setdefault(key, (values[transfer_id], []))[1].append(transfer_id)
            for shared, ids in alike.values():
                session.execute(
                    update(Transfer)
                    .where(col(Transfer.id).in_(ids))
                    .values(updated_at=now, **shared)
                )
        return held

    def _release(self, batch: list[Transfer]) -> None:
        """Give up the leases of a run's transfers that were cancelled (or cancelled and already
        retried) once it has stopped; wake those a retry is waiting for."""
        claims = {row_id(transfer): transfer.claim for transfer in batch}
        with session_scope(self.engine, write=ROWS) as session:
            rows = session.exec(
                select(Transfer.id, Transfer.claim, Transfer.state)
                .where(
                    col(Transfer.id).in_(list(claims)),
                    col(Transfer.state).in_((QUEUED, FAILED)),
                    col(Transfer.lease_until).is_not(None),
                )
                .order_by(col(Transfer.id))
                .with_for_update()
            ).all()
            released = [
                (found, state) for found, claim, state in rows if claims.get(found or 0) == claim
            ]
            session.execute(
                update(Transfer)
                .where(col(Transfer.id).in_([found for found, _ in released]))
                .values(lease_until=None)
            )
        for transfer_id, state in released:
            if state == QUEUED and transfer_id is not None:
                self.wake(transfer_id)

    def run(self, transfer_id: int) -> None:
        """Carry the transfer (with its batch) one step further (a huey task): submit, follow,
        verify."""
        if taken(self.engine, transfer_id):
            return
        batch = self._claim(transfer_id)
        if not batch:
            return
        lead = batch[0]
        if lead.kind == "metadata" and metadata_file.in_progress(self.engine, lead):
            # One metadata.json writer per dataset at a time, so the newest content lands last.
            self._save(lead, state=QUEUED, lease_until=None, next_attempt_at=utcnow())
            self.wake(transfer_id, delay=1)
            return
        every = self.settings["transfer_progress_seconds"]
        try:
            with watched(
                batch, self._save_each_of(batch), self.engine, self.lease, every
            ) as progress:
                if lead.kind == "metadata":
                    metadata_file.write(self, lead)
                    self._save(lead, state=DONE, finished_at=utcnow(), last_error=None)
                else:
                    batches.move(self, batch, progress)
        except Exception as error:  # a bug must not leave the transfers claimed forever
            self._failed_all(batch, error)
        finally:
            self._release(batch)

    def _save_each_of(self, batch: list[Transfer]) -> Any:
        return lambda values: self._save_each(batch, values)

    def _failed_all(self, batch: list[Transfer], error: Exception) -> None:
        """A step of the whole batch failed: each transfer fails (or is retried) with it."""
        if isinstance(error, AdapterError):
            message, permanent = str(error), error.permanent
        else:
            log.exception("transfers %s", [transfer.id for transfer in batch], exc_info=error)
            # An OSError an adapter let through is as permanent as its errno says.
            permanent = isinstance(error, OSError) and error.errno in PERMANENT_ERRNOS
            message = f"internal error: {error}"
        for transfer in batch:
            self._failed(transfer, message, permanent)

    def _state(self, transfer: Transfer) -> str | None:
        with session_scope(self.engine, write=False) as session:
            return session.exec(select(Transfer.state).where(Transfer.id == transfer.id)).first()

    def refresh_metadata(self, dataset_id: int) -> None:
        """Queue a rewrite of the dataset's metadata.json once its files settle; a rewrite that
        is already waiting takes the request and waits the settling time again."""
        settle = 0 if self.huey.immediate else self.settings["metadata_settle_seconds"]
        due = utcnow() + timedelta(seconds=settle)
        with session_scope(self.engine) as session:
            waiting = rows_changed(
                session,
                update(Transfer)
                .where(
                    col(Transfer.dataset_id) == dataset_id,
                    col(Transfer.kind) == "metadata",
                    col(Transfer.state) == QUEUED,
                )
                .values(next_attempt_at=due),
            )
            if waiting:
                return  # its message, on arriving early, schedules itself for the new time
            dataset = session.get(Dataset, dataset_id)
            endpoint = session.get(Endpoint, dataset.endpoint_id) if dataset else None
            if dataset is None or endpoint is None:
                return  # the dataset is gone: no metadata.json to write
            transfer = self.add(session, dataset, endpoint)
            transfer.next_attempt_at = due
        self.wake(row_id(transfer), delay=settle)

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
        retried = self._save(
            transfer,
            state=QUEUED,
            attempts=attempts,
            last_error=message,
            next_attempt_at=utcnow() + delay,
            lease_until=None,
            handle=None,  # the next attempt submits again (adapters resume from their memo)
        )
        if retried:  # not if it was cancelled meanwhile
            self.wake(row_id(transfer), delay=delay.total_seconds())

    # What users and admins do ------------------------------------------------------------------

    def retry(self, transfer_id: int) -> bool:
        """Queue a failed transfer again from scratch; False if it had not (:mod:`.actions`)."""
        return actions.retry(self, transfer_id)

    def cancel(self, transfer_id: int) -> bool:
        """Stop a transfer that has not ended; False if it had (:mod:`.actions`)."""
        return actions.cancel(self, transfer_id)
