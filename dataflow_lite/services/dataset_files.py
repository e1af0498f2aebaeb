"""A dataset's files: where a new one may go, and cataloguing one whose bytes are staged.

``add_file`` is ``dataset-file-upload``'s use case; resumable uploads check their target with
``check_free`` when they start and catalogue the finished file with ``record_file``, so both
routes refuse and record files the same way. Bundles (many files in one request) are
``services/file_bundles.py``, which builds its rows from the same ``file_row`` and shows them as
``shown_values`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlmodel import Session, col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit, datasets
from dataflow_lite.services.errors import Conflict, invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import catalog, layout, search
from dataflow_lite.store.db import UnitOfWork, unit_of_work
from dataflow_lite.store.models import (
    Dataset,
    DatasetFile,
    Endpoint,
    ResumableUpload,
    Transfer,
    row_id,
    utcnow,
)


@dataclass(frozen=True)
class StagedFile:
    """An uploaded file, already written to the staging area and hashed."""

    path: Path
    filename: str
    size: int
    sha256: str
    content_type: str = ""


def checked_target(relative_path: str, filename: str) -> tuple[PurePosixPath, str]:
    """The folder below the dataset root and the file name a user asked for (Invalid if unsafe)."""
    try:
        relative = layout.check_relative_path(relative_path)
    except layout.UnsafePath as error:
        raise invalid("relative_path", str(error)) from error
    try:
        name = layout.check_file_name(filename, what="file name")
    except layout.UnsafePath as error:
        raise invalid("file", str(error)) from error
    return relative, name


class UnfinishedUpload(Conflict):
    """The path is held by an unfinished resumable upload: its owner may resume it."""

    def __init__(self, message: str, upload: ResumableUpload) -> None:
        super().__init__(message)
        self.upload_id, self.user_id, self.length = upload.id, upload.user_id, upload.length


def check_free(
    session: Session,
    dataset_id: int,
    relative: PurePosixPath,
    name: str,
    upload_id: str | None = None,
) -> None:
    """Conflict unless a new file may go at ``relative/name`` in the dataset.

    Taken: the server's own metadata.json, a file or directory already there, a file where a
    folder of the path must be, and the path of an unfinished resumable upload (other than
    ``upload_id``, the one that is finishing).
    """
    if (relative.parts[:1] or (name,)) == (layout.METADATA_FILE,):
        raise Conflict(f"{layout.METADATA_FILE} at the dataset root is kept by the server")
    parent = str(relative) if relative.parts else ""
    if catalog.file_at(session, dataset_id, parent, name):
        raise Conflict(
            f"dataset {dataset_id} already has {relative / name}: nothing was overwritten"
        )
    for depth, folder in enumerate(relative.parts):
        found = catalog.file_at(session, dataset_id, "/".join(relative.parts[:depth]), folder)
        if found is not None and not found.is_directory:
            raise Conflict(
                f"{PurePosixPath(*relative.parts[: depth + 1])} is a file in dataset "
                f"{dataset_id}, not a directory"
            )
    pending = session.exec(
        select(ResumableUpload).where(
            ResumableUpload.dataset_id == dataset_id,
            ResumableUpload.relative_path == parent,
            ResumableUpload.name == name,
            col(ResumableUpload.file_id).is_(None),
            col(ResumableUpload.expires_at) > utcnow(),
            ResumableUpload.id != (upload_id or ""),
        )
    ).first()
    if pending is not None:
        raise UnfinishedUpload(
            f"dataset {dataset_id} already has an unfinished upload of {relative / name}: "
            "resume it, or end it first",
            pending,
        )


@use_case("file.add")
def add_file(
    rt: Runtime, identity: Identity, dataset_id: int, relative_path: str, staged: StagedFile
) -> dict[str, Any]:
    """Record a staged file (and its new directories) in the dataset and queue its transfer.

    Conflict when the dataset already has a file or directory at that path, or an unfinished
    resumable upload of it: nothing is overwritten. The queue owns the staged file once this
    returns.
    """
    relative, name = checked_target(relative_path, staged.filename)
    with unit_of_work(rt.engine) as work:
        dataset = datasets.visible_dataset(work.session, identity, dataset_id)
        authorize(identity, "file.add", dataset)
        check_free(work.session, dataset_id, relative, name)
        added = record_file(rt, work, identity, dataset, relative, name, staged)
    return with_transfer_state(rt, added)


def record_file(
    rt: Runtime,
    work: UnitOfWork,
    identity: Identity,
    dataset: Dataset,
    relative: PurePosixPath,
    name: str,
    staged: StagedFile,
) -> dict[str, Any]:
    """Catalogue a staged file that ``check_free`` allowed, queue its transfer, audit it.

    Return the file as the upload routes show it, before its transfer's state is known.
    """
    endpoint = work.session.get(Endpoint, dataset.endpoint_id)
    assert endpoint is not None
    row, transfer = catalogue(rt, work.session, dataset, endpoint, relative, name, staged)
    search.add_names(work.session, row_id(dataset), [*relative.parts, name])
    audit.record(work, identity, "file.add", "file", row.id, added_summary(row, transfer))
    datasets.wake_after_commit(rt, work, transfer)
    return shown(rt, dataset, endpoint, row, transfer)


def file_row(
    dataset_id: int, relative: PurePosixPath, name: str, staged: StagedFile
) -> DatasetFile:
    """The catalogue row of a staged file at ``relative/name`` in the dataset."""
    return DatasetFile(
        dataset_id=dataset_id,
        name=name,
        relative_path=str(relative) if relative.parts else "",
        file_length=staged.size,
        file_type=staged.content_type,
        sha256=staged.sha256,
    )


def catalogue(
    rt: Runtime,
    session: Session,
    dataset: Dataset,
    endpoint: Endpoint,
    relative: PurePosixPath,
    name: str,
    staged: StagedFile,
    folders: set[str] | None = None,
) -> tuple[DatasetFile, Transfer]:
    """The file's row (after its new directories) and its queued transfer, in ``session``.

    ``folders``: the folders already known to exist, kept across the files of one request.
    """
    dataset_id = row_id(dataset)
    row = file_row(dataset_id, relative, name, staged)
    session.add(row)
    session.flush()
    # After the file, as DataFlow lists them: the file first, then its new directories.
    ensure_directories(session, dataset_id, relative, folders)
    return row, rt.queue.add(session, dataset, endpoint, row, staged.path)


def added_summary(row: DatasetFile, transfer: Transfer) -> dict[str, Any]:
    """What the audit trail says of one added file."""
    return {
        "dataset_id": row.dataset_id,
        "path": "/".join(part for part in (row.relative_path, row.name) if part),
        "size": row.file_length,
        "sha256": row.sha256,
        "transfer_id": transfer.id,
    }


def shown(
    rt: Runtime, dataset: Dataset, endpoint: Endpoint, row: DatasetFile, transfer: Transfer
) -> dict[str, Any]:
    """An added file as the upload routes show it."""
    return shown_values(rt, dataset, endpoint, row.model_dump(), row_id(transfer))


def shown_values(
    rt: Runtime, dataset: Dataset, endpoint: Endpoint, row: dict[str, Any], transfer_id: int
) -> dict[str, Any]:
    """An added file (its row's values) as the upload routes show it."""
    target = layout.file_target(dataset.folder, PurePosixPath(row["relative_path"]), row["name"])
    return {
        **row,
        "transport": endpoint.adapter,
        "destination": rt.adapters.locate(endpoint, target),
        "transfer_id": transfer_id,
    }


def with_transfer_state(rt: Runtime, added: dict[str, Any]) -> dict[str, Any]:
    """``added`` (from ``record_file``, committed) with its transfer's state as of now."""
    # Read after the worker was woken: with an immediate queue (tests) it has run already.
    with unit_of_work(rt.engine, write=False) as work:
        moved = work.session.get(Transfer, added["transfer_id"])
        return {**added, "transfer_state": moved.state if moved else None}


def ensure_directories(
    session: Session, dataset_id: int, relative: PurePosixPath, known: set[str] | None = None
) -> None:
    """One directory entry per component of ``relative``, each once per dataset."""
    for depth, name in enumerate(relative.parts):
        folder = "/".join(relative.parts[: depth + 1])
        if known is not None and folder in known:
            continue
        parent = "/".join(relative.parts[:depth])
        found = catalog.file_at(session, dataset_id, parent, name)
        if found is None:
            session.add(
                DatasetFile(
                    dataset_id=dataset_id, name=name, relative_path=parent, is_directory=True
                )
            )
            session.flush()
        elif not found.is_directory:
            raise Conflict(
                f"{PurePosixPath(parent, name)} is a file in dataset {dataset_id}, not a directory"
            )
        if known is not None:
            known.add(folder)
