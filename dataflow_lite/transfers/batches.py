"""Moving files in batches: the waiting files of one dataset and endpoint, handed to an adapter
together, each with its own outcome.

An adapter whose class sets ``batches`` (sftp: one rsync and one sha256 pass on the host; Globus:
one task) is handed, with the transfer a message woke, the other due files of the same dataset
and endpoint, up to ``transfer_batch_files`` files and ``transfer_batch_bytes`` bytes. They are
claimed together (one claim, one lease renewed for all by one watch) and each keeps its own
record: a file that fails fails alone, with its own words, permanent or retried; the others
land and are verified. Other adapters get one file at a time, through the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, insert
from sqlmodel import Session, col, select

from dataflow_lite.adapter import (
    DONE,
    FAILED,
    RUNNING,
    VERIFYING,
    AdapterError,
    Credentials,
    TransferAdapter,
    TransferJob,
)
from dataflow_lite.store import credentials, layout
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.models import Dataset, DatasetFile, Endpoint, Transfer, row_id, utcnow
from dataflow_lite.transfers.watch import Progress

if TYPE_CHECKING:
    from dataflow_lite.transfers.queue import TransferQueue


def companions(
    session: Session, lead: Transfer, claimable: ColumnElement[bool], settings: dict[str, Any]
) -> list[int]:
    """The due transfers that join ``lead``'s batch: files of its dataset and endpoint at the
    same step (no handle yet, or the same one: a Globus task being followed), oldest first,
    within the batch's bounds."""
    lead_file = session.get(DatasetFile, lead.file_id) if lead.file_id else None
    total = (lead_file.file_length or 0) if lead_file else 0
    handle = (
        col(Transfer.handle).is_(None)
        if lead.handle is None
        else col(Transfer.handle) == lead.handle
    )
    rows = session.exec(
        select(Transfer.id, DatasetFile.file_length)
        .join(DatasetFile, col(DatasetFile.id) == col(Transfer.file_id))
        .where(
            Transfer.dataset_id == lead.dataset_id,
            Transfer.endpoint_id == lead.endpoint_id,
            Transfer.kind == "file",
            Transfer.id != lead.id,
            handle,
            claimable,
        )
        .order_by(col(Transfer.id))
        .limit(max(settings["transfer_batch_files"] - 1, 0))
        .with_for_update(skip_locked=True, of=Transfer)  # those another worker claims: not ours
    ).all()
    chosen = []
    for transfer_id, size in rows:
        if transfer_id is not None and total + (size or 0) <= settings["transfer_batch_bytes"]:
            chosen.append(transfer_id)
            total += size or 0
    return chosen


def new_transfer(
    host: str, dataset: Dataset, endpoint: Endpoint, file_id: int | None, staged: Path | None
) -> Transfer:
    """A queued transfer of a file (or, without ``file_id``, of metadata.json), not yet added."""
    return Transfer(
        kind="file" if file_id is not None else "metadata",
        dataset_id=row_id(dataset),
        file_id=file_id,
        endpoint_id=endpoint.id,
        user_id=dataset.creator_id,
        adapter=endpoint.adapter,
        staged_path=str(staged) if staged else None,
        staged_on=host if staged else None,
    )


def add_files(
    session: Session,
    host: str,
    dataset: Dataset,
    endpoint: Endpoint,
    files: list[tuple[int, Path]],
) -> list[int]:
    """Record a queued transfer of each ``(file id, staged path)`` in one INSERT; their ids, in
    order. One model object is built (its defaults) rather than one per file: validating and
    flushing 300 of them cost most of a bundle's cataloguing."""
    values = new_transfer(host, dataset, endpoint, 0, Path("staged")).model_dump(exclude={"id"})
    rows = [{**values, "file_id": file_id, "staged_path": str(staged)} for file_id, staged in files]
    if not rows:
        return []
    statement = insert(Transfer).returning(col(Transfer.id), sort_by_parameter_order=True)
    return [int(found) for found in session.execute(statement, rows).scalars()]


def wake_together(queue: TransferQueue, adapter: str, transfer_ids: list[int]) -> None:
    """Wake file transfers of one dataset and endpoint queued together (call after
    committing): the first of each batch where the adapter batches, else every one."""
    batched = bool(transfer_ids) and queue.adapter_batches(adapter)
    step = max(queue.settings["transfer_batch_files"], 1) if batched else 1
    for transfer_id in transfer_ids[::step]:
        queue.wake(transfer_id)


@dataclass(eq=False)
class _File:
    """One transfer of a running batch, with the job its adapter sees.

    Compared by identity: a batch asks whether a file is still in its list, and comparing by
    value compared whole model objects, field by field (0.1-0.3 s for 300 files, quadratic).
    """

    transfer: Transfer
    job: TransferJob
    handle: str | None


class _Batch:
    """The files of one run still on their way; each leaves it when it fails or is done."""

    def __init__(self, queue: TransferQueue, files: list[_File]) -> None:
        self.queue = queue
        self.files = files

    @property
    def jobs(self) -> list[TransferJob]:
        return [file.job for file in self.files]

    @property
    def handles(self) -> list[str]:
        return [file.handle or "" for file in self.files]

    def fail(self, file: _File, message: str, permanent: bool) -> None:
        """This file alone failed (or will be retried); the others go on."""
        self.queue._failed(file.transfer, message, permanent)
        self.files.remove(file)

    def save(
        self, values: dict[str, Any] | None = None, each: dict[int, dict[str, Any]] | None = None
    ) -> set[int]:
        """Store ``values`` for every file still here (and ``each[id]`` for that one), in one
        transaction; drop the files whose claim no longer holds (cancelled)."""
        updates = {
            row_id(file.transfer): {**(values or {}), **(each or {}).get(row_id(file.transfer), {})}
            for file in self.files
        }
        held = self.queue._save_each([file.transfer for file in self.files], updates)
        self.files = [file for file in self.files if file.transfer.id in held]
        return held


def _job(
    queue: TransferQueue,
    transfer: Transfer,
    dataset: Dataset,
    file: DatasetFile,
    user_credentials: Credentials | None,
    progress: Progress,
) -> TransferJob:
    memo = dict(transfer.memo)

    def remember(key: str, value: Any) -> None:
        memo[key] = value
        queue._save(transfer, memo=dict(memo))

    return TransferJob(
        staged=Path(transfer.staged_path or ""),
        target=layout.file_target(
            dataset.folder, layout.PurePosixPath(file.relative_path), file.name
        ),
        sha256=file.sha256 or "",
        size=file.file_length or 0,
        credentials=user_credentials,
        memo=memo,
        remember=remember,
        progress=progress.report,
        cancelled=progress.cancelled,
    )


def move(queue: TransferQueue, transfers: list[Transfer], progress: list[Progress]) -> None:
    """Carry a batch of file transfers one step further: submit, follow, verify, each file
    with its own outcome. An AdapterError raised here is the whole batch's."""
    lead = transfers[0]
    with session_scope(queue.engine, write=False) as session:
        endpoint = session.get(Endpoint, lead.endpoint_id)
        dataset = session.get(Dataset, lead.dataset_id)
        rows = session.exec(
            select(DatasetFile).where(col(DatasetFile.id).in_([t.file_id for t in transfers]))
        ).all()
        user_credentials = credentials.load(session, queue.cipher, lead.user_id, lead.endpoint_id)
    assert endpoint is not None and dataset is not None
    files = {row.id: row for row in rows}
    adapter = queue.adapters.for_endpoint(endpoint.adapter, endpoint.options)
    batch = _Batch(
        queue,
        [
            _File(t, _job(queue, t, dataset, files[t.file_id], user_credentials, p), t.handle)
            for t, p in zip(transfers, progress, strict=True)
            if t.file_id in files
        ],
    )
    if lead.handle is None:
        _submit(adapter, batch)
    if not _follow(queue, adapter, batch):
        return
    _verify(queue, adapter, batch, row_id(dataset))


def _submit(adapter: TransferAdapter, batch: _Batch) -> None:
    outcomes = adapter.submit_batch(batch.jobs)
    for file, outcome in zip(list(batch.files), outcomes, strict=True):
        if isinstance(outcome, AdapterError):
            batch.fail(file, str(outcome), outcome.permanent)
        else:
            file.handle = outcome
    submitted = list(batch.files)
    batch.save(each={row_id(file.transfer): {"handle": file.handle} for file in submitted})
    # Cancelled while the submit ran: what it started (a Globus task) stops too, unless other
    # files of the batch share it.
    kept = {file.handle for file in batch.files}
    for file in submitted:
        if file not in batch.files and file.handle not in kept and file.handle:
            adapter.cancel(file.job, file.handle)
            kept.add(file.handle)


def _follow(queue: TransferQueue, adapter: TransferAdapter, batch: _Batch) -> bool:
    """Ask where each file stands; whether any is ready to verify."""
    statuses = adapter.status_batch(batch.jobs, batch.handles)
    moving = []
    moved: dict[int, dict[str, Any]] = {}
    for file, status in zip(list(batch.files), statuses, strict=True):
        moved[row_id(file.transfer)] = {"bytes_moved": status.bytes_moved}
        if status.state == FAILED:
            batch.fail(file, status.error or "the transfer failed", status.permanent)
        elif status.state != DONE:
            moving.append(file)
    if moving:
        # Still moving (a Globus task): look again later, without counting an attempt; one
        # message wakes them all again (as a batch with the same handle).
        poll = queue.settings["transfer_poll_seconds"]
        later = {
            "state": RUNNING,
            "lease_until": utcnow(),
            "next_attempt_at": utcnow() + timedelta(seconds=poll),
        }
        for file in moving:
            moved[row_id(file.transfer)].update(later)
    batch.save(each=moved)
    if moving:
        going = [file for file in moving if file in batch.files]
        if going:
            queue.wake(row_id(going[0].transfer), delay=queue.settings["transfer_poll_seconds"])
        batch.files = [file for file in batch.files if file not in moving]
    return bool(batch.files)


def _verify(queue: TransferQueue, adapter: TransferAdapter, batch: _Batch, dataset_id: int) -> None:
    batch.save({"state": VERIFYING})
    results = adapter.verify_batch(batch.jobs, batch.handles)
    for file, result in zip(list(batch.files), results, strict=True):
        if isinstance(result, AdapterError):
            batch.fail(file, str(result), result.permanent)
        elif not result:
            message = (
                f"the checksum of {file.job.target} at the destination does not match the upload's"
            )
            batch.fail(file, message, permanent=True)
    if not batch.files:
        return
    # Queue metadata.json's rewrite first: whoever sees a file done finds it coming.
    queue.refresh_metadata(dataset_id)
    done = batch.save(
        {"state": DONE, "finished_at": utcnow(), "last_error": None, "staged_path": None},
        each={row_id(file.transfer): {"bytes_moved": file.job.size} for file in batch.files},
    )
    # Only then the staged copies go: a crash in between leaves stray staged files, never a
    # transfer whose retry cannot find its bytes.
    for file in batch.files:
        if file.transfer.id in done:
            file.job.staged.unlink(missing_ok=True)
