"""Resumable uploads: a file that arrives in pieces, checked before its first byte is sent.

An upload is started with where the file goes (dataset, folder, name) and its length; the
path, the name and the dataset are checked then, exactly as for a one-request upload, and the
path counts as taken from then on. Its bytes go to the staging area (the HTTP face writes
them); ``offset`` is how many are durable. Once the last byte arrived, ``finish_upload``
catalogues the file through the same code as ``dataset_files.add_file``, so it is transferred and
verified the same way. An unfinished upload expires ``resumable_upload_expiry_seconds`` after
it was started or last received bytes; the transfer worker's sweep then removes its bytes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, delete, update
from sqlmodel import Session, col

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit, dataset_files
from dataflow_lite.services.errors import Conflict, NotFound, TooLarge
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import layout
from dataflow_lite.store.db import session_scope, unit_of_work
from dataflow_lite.store.models import Dataset, ResumableUpload, row_id, utcnow


@dataclass(frozen=True)
class UploadState:
    """Where a resumable upload stands, as its owner may see it."""

    id: str
    dataset_id: int
    length: int
    offset: int
    expires_at: datetime
    #: The bytes in the staging area (present once the first PATCH wrote).
    staged_path: Path
    content_type: str
    upload_metadata: str
    #: The catalogued file, once the upload is complete.
    file_id: int | None

    @property
    def complete(self) -> bool:
        return self.file_id is not None


def _state(rt: Runtime, row: ResumableUpload) -> UploadState:
    return UploadState(
        id=row.id,
        dataset_id=row.dataset_id,
        length=row.length,
        offset=row.offset,
        expires_at=row.expires_at,
        staged_path=rt.adapters.context.staging_dir / layout.resumable_staged_name(row.id),
        content_type=row.content_type,
        upload_metadata=row.upload_metadata,
        file_id=row.file_id,
    )


def _expiry(rt: Runtime) -> datetime:
    return utcnow() + timedelta(seconds=rt.settings["resumable_upload_expiry_seconds"])


@use_case("upload.start")
def start_upload(
    rt: Runtime,
    identity: Identity,
    dataset_id: int,
    relative_path: str,
    filename: str,
    length: int,
    content_type: str = "",
    upload_metadata: str = "",
) -> UploadState:
    """Start an upload of ``length`` bytes to ``relative_path/filename`` in the dataset.

    Refused as ``dataset_files.add_file`` would refuse the finished file (NotFound, Invalid,
    Conflict), and TooLarge beyond ``max_upload_bytes``; nothing is recorded then.
    """
    relative, name = dataset_files.checked_target(relative_path, filename)
    limit = rt.settings["max_upload_bytes"]
    if length > limit:
        raise TooLarge(
            f"the upload is larger than this server's limit of {limit} bytes",
            {"Upload-Length": [f"must be at most {limit}"]},
        )
    with unit_of_work(rt.engine) as work:
        session = work.session
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise NotFound(f"dataset {dataset_id} not found")
        authorize(identity, "upload.start", dataset)
        parent = str(relative) if relative.parts else ""
        # An expired upload of the same path, not swept yet, gives way to the new one.
        session.execute(
            delete(ResumableUpload).where(
                col(ResumableUpload.dataset_id) == dataset_id,
                col(ResumableUpload.relative_path) == parent,
                col(ResumableUpload.name) == name,
                col(ResumableUpload.file_id).is_(None),
                col(ResumableUpload.expires_at) <= utcnow(),
            )
        )
        dataset_files.check_free(session, dataset_id, relative, name)
        row = ResumableUpload(
            id=secrets.token_hex(16),
            user_id=identity.uid,
            dataset_id=row_id(dataset),
            relative_path=parent,
            name=name,
            content_type=content_type,
            length=length,
            upload_metadata=upload_metadata,
            expires_at=_expiry(rt),
        )
        session.add(row)
        session.flush()
        audit.record(
            work,
            identity,
            "upload.start",
            "upload",
            row.id,
            {"dataset_id": dataset_id, "path": str(relative / name), "length": length},
        )
        return _state(rt, row)


def _visible(session: Session, identity: Identity, upload_id: str, action: str) -> ResumableUpload:
    row = session.get(ResumableUpload, upload_id)
    if row is None or (row.file_id is None and row.expires_at <= utcnow()):
        raise NotFound(f"upload {upload_id} not found (or expired)")
    authorize(identity, action, row)
    return row


@use_case("upload.read")
def upload_state(rt: Runtime, identity: Identity, upload_id: str) -> UploadState:
    """Where the upload stands (NotFound once it expired, or if it is another user's)."""
    with unit_of_work(rt.engine, write=False) as work:
        return _state(rt, _visible(work.session, identity, upload_id, "upload.read"))


@use_case("upload.write")
def writable_upload(rt: Runtime, identity: Identity, upload_id: str) -> UploadState:
    """The upload, if the identity may send it bytes: unfinished (else Conflict), not expired."""
    with unit_of_work(rt.engine, write=False) as work:
        row = _visible(work.session, identity, upload_id, "upload.write")
        if row.file_id is not None:
            raise Conflict(f"upload {upload_id} is complete: its file is in the dataset")
        return _state(rt, row)


def record_offset(rt: Runtime, upload_id: str, old: int, new: int) -> bool:
    """Record that the bytes up to ``new`` are durable; False if the upload went meanwhile.

    The server's own bookkeeping (not audited): only the writer holding the staged file's lock
    calls it, after ``writable_upload`` allowed the request. Each call renews the expiry.
    """
    with session_scope(rt.engine) as session:
        result = session.execute(
            update(ResumableUpload)
            .where(
                col(ResumableUpload.id) == upload_id,
                col(ResumableUpload.offset) == old,
                col(ResumableUpload.file_id).is_(None),
            )
            .values(offset=new, expires_at=_expiry(rt))
        )
        assert isinstance(result, CursorResult)
        return result.rowcount == 1


@use_case("file.add")
def finish_upload(rt: Runtime, identity: Identity, upload_id: str, sha256: str) -> dict[str, Any]:
    """Catalogue the complete upload's file, queue its transfer, and mark the upload complete.

    One transaction: the file is catalogued exactly when the upload is marked complete. Return
    the file as ``dataset_files.add_file`` does; the queue owns the staged bytes from then on.
    """
    with unit_of_work(rt.engine) as work:
        session = work.session
        row = _visible(session, identity, upload_id, "upload.write")
        if row.file_id is not None or row.offset != row.length:
            raise Conflict(f"upload {upload_id} is not an unfinished upload with all its bytes")
        dataset = session.get(Dataset, row.dataset_id)
        assert dataset is not None  # uploads are removed with their dataset
        authorize(identity, "file.add", dataset)
        relative = layout.check_relative_path(row.relative_path)
        dataset_files.check_free(session, row.dataset_id, relative, row.name, upload_id=row.id)
        staged = dataset_files.StagedFile(
            _state(rt, row).staged_path, row.name, row.length, sha256, row.content_type
        )
        added = dataset_files.record_file(rt, work, identity, dataset, relative, row.name, staged)
        row.file_id = added["id"]
        session.add(row)
    return dataset_files.with_transfer_state(rt, added)


@use_case("upload.cancel")
def cancel_upload(rt: Runtime, identity: Identity, upload_id: str) -> Path:
    """End an unfinished upload (Conflict if complete); return its staged bytes to remove."""
    with unit_of_work(rt.engine) as work:
        row = _visible(work.session, identity, upload_id, "upload.cancel")
        if row.file_id is not None:
            raise Conflict(f"upload {upload_id} is complete: its file is in the dataset")
        state = _state(rt, row)
        work.session.delete(row)
        audit.record(
            work,
            identity,
            "upload.cancel",
            "upload",
            upload_id,
            {"dataset_id": row.dataset_id, "offset": row.offset, "length": row.length},
        )
    return state.staged_path
