"""Several small files in one request (``dataset-file-bundle``): checked before their bytes
arrive, then catalogued together in one transaction, all or none.

The files and their transfers are inserted with one statement each (SQLAlchemy's bulk
``INSERT ... RETURNING`` from plain values), not as model objects: building, validating and
flushing 600 objects for 300 files (a file and a transfer each) was most of a bundle's
cataloguing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit, datasets
from dataflow_lite.services.dataset_files import (
    StagedFile,
    checked_target,
    ensure_directories,
    file_row,
    shown_values,
)
from dataflow_lite.services.errors import Conflict, Invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import layout, search
from dataflow_lite.store.db import unit_of_work
from dataflow_lite.store.models import DatasetFile, Endpoint, ResumableUpload, Transfer, utcnow
from dataflow_lite.transfers import batches


@dataclass(frozen=True)
class BundleEntry:
    """One file a bundle announces before its bytes: its path in the dataset, size, sha256."""

    path: str
    size: int
    sha256: str


def checked_bundle(entries: list[BundleEntry]) -> list[tuple[PurePosixPath, str]]:
    """Each entry's folder and name (Invalid, by entry, if unsafe or clashing inside the bundle).

    A bundle may not name a path twice, nor use one of its files as another's folder.
    """
    targets, errors, seen = [], {}, set()
    for number, entry in enumerate(entries):
        folder, _, name = entry.path.rpartition("/")
        try:
            relative, name = checked_target(folder, name)
        except Invalid as error:
            errors[f"files.{number}.path"] = [error.message]
            continue
        target = str(relative / name)
        if target in seen:
            errors[f"files.{number}.path"] = [f"{target} is named twice in the bundle"]
        seen.add(target)
        targets.append((relative, name))
    folders = {
        str(PurePosixPath(*rel.parts[: d + 1])) for rel, _ in targets for d in range(len(rel.parts))
    }
    for number, (relative, name) in enumerate(targets):
        if str(relative / name) in folders:
            errors[f"files.{number}.path"] = [f"{relative / name} is a file and a folder"]
    if errors:
        first = next(iter(errors.values()))[0]
        raise Invalid(f"the bundle is refused: {first}", errors)
    return targets


def check_all_free(
    session: Session, dataset_id: int, targets: list[tuple[PurePosixPath, str]]
) -> None:
    """``check_free`` for many targets at once, in three reads whatever their number."""
    for relative, name in targets:
        if (relative.parts[:1] or (name,)) == (layout.METADATA_FILE,):
            raise Conflict(f"{layout.METADATA_FILE} at the dataset root is kept by the server")
    names = {name for _, name in targets} | {part for rel, _ in targets for part in rel.parts}
    found = {
        (parent, name): is_directory
        for parent, name, is_directory in session.exec(
            select(DatasetFile.relative_path, DatasetFile.name, DatasetFile.is_directory).where(
                DatasetFile.dataset_id == dataset_id, col(DatasetFile.name).in_(names)
            )
        ).all()
    }
    pending = set(
        session.exec(
            select(ResumableUpload.relative_path, ResumableUpload.name).where(
                ResumableUpload.dataset_id == dataset_id,
                col(ResumableUpload.name).in_(names),
                col(ResumableUpload.file_id).is_(None),
                col(ResumableUpload.expires_at) > utcnow(),
            )
        ).all()
    )
    for relative, name in targets:
        parent = str(relative) if relative.parts else ""
        if (parent, name) in found:
            raise Conflict(
                f"dataset {dataset_id} already has {relative / name}: nothing was overwritten"
            )
        for depth, folder in enumerate(relative.parts):
            if found.get(("/".join(relative.parts[:depth]), folder)) is False:
                raise Conflict(
                    f"{PurePosixPath(*relative.parts[: depth + 1])} is a file in dataset "
                    f"{dataset_id}, not a directory"
                )
        if (parent, name) in pending:
            raise Conflict(
                f"dataset {dataset_id} already has an unfinished upload of {relative / name}: "
                "resume it, or end it first"
            )


@use_case("file.add")
def check_bundle(
    rt: Runtime, identity: Identity, dataset_id: int, entries: list[BundleEntry]
) -> list[tuple[PurePosixPath, str]]:
    """Refuse a bundle before its bytes arrive as ``add_files`` would refuse it once they have
    (NotFound, Forbidden, Invalid, Conflict); its targets if it may come."""
    targets = checked_bundle(entries)
    with unit_of_work(rt.engine, write=False) as work:
        dataset = datasets.visible_dataset(work.session, identity, dataset_id)
        authorize(identity, "file.add", dataset)
        check_all_free(work.session, dataset_id, targets)
    return targets


def _insert_files(
    session: Session,
    dataset_id: int,
    targets: list[tuple[PurePosixPath, str]],
    staged: list[StagedFile],
) -> list[dict[str, Any]]:
    """Catalogue a bundle's files with one INSERT; each row's values, its id included.

    One model object gives the defaults, rather than one per file: building and flushing 300
    of them (a file and a transfer each) was most of a bundle's cataloguing time.
    """
    template = file_row(dataset_id, PurePosixPath(), "file", StagedFile(Path(), "", 0, ""))
    defaults = template.model_dump(exclude={"id"})
    rows = [
        {
            **defaults,
            "name": name,
            "relative_path": str(relative) if relative.parts else "",
            "file_length": file.size,
            "file_type": file.content_type,
            "sha256": file.sha256,
        }
        for (relative, name), file in zip(targets, staged, strict=True)
    ]
    statement = insert(DatasetFile).returning(col(DatasetFile.id), sort_by_parameter_order=True)
    ids = session.execute(statement, rows).scalars().all()
    return [{"id": found, **row} for found, row in zip(ids, rows, strict=True)]


@use_case("file.add")
def add_files(
    rt: Runtime, identity: Identity, dataset_id: int, staged: list[tuple[BundleEntry, StagedFile]]
) -> list[dict[str, Any]]:
    """Record a bundle's staged files in the dataset in one transaction, all or none.

    Refused (nothing recorded) as ``add_file`` refuses one file. One full-text update, one
    audit event naming every file (the request is one change; the trail grows by one row per
    bundle, not per file), and one wake per batch: a worker takes the bundle's transfers as
    one batch where the endpoint's adapter batches (sftp, Globus).
    """
    targets = checked_bundle([entry for entry, _ in staged])
    with unit_of_work(rt.engine) as work:
        session = work.session
        dataset = datasets.visible_dataset(session, identity, dataset_id)
        authorize(identity, "file.add", dataset)
        endpoint = session.get(Endpoint, dataset.endpoint_id)
        assert endpoint is not None
        check_all_free(session, dataset_id, targets)
        rows = _insert_files(session, dataset_id, targets, [file for _, file in staged])
        folders: set[str] = set()
        for relative, _ in targets:
            ensure_directories(session, dataset_id, relative, folders)
        transfer_ids = batches.add_files(
            session,
            rt.queue.host,
            dataset,
            endpoint,
            [(row["id"], file.path) for row, (_, file) in zip(rows, staged, strict=True)],
        )
        added = list(zip(rows, transfer_ids, strict=True))
        search.add_names(session, dataset_id, [p for r, n in targets for p in (*r.parts, n)])
        files = [
            {
                "dataset_id": dataset_id,
                "path": "/".join(part for part in (row["relative_path"], row["name"]) if part),
                "size": row["file_length"],
                "sha256": row["sha256"],
                "transfer_id": transfer_id,
            }
            for row, transfer_id in added
        ]  # as added_summary says of each file
        summary = {"dataset_id": dataset_id, "count": len(files), "files": files}
        audit.record(work, identity, "file.add", "dataset", dataset_id, summary)
        work.after_commit(lambda: batches.wake_together(rt.queue, endpoint.adapter, transfer_ids))
        shown_files = [shown_values(rt, dataset, endpoint, row, tid) for row, tid in added]
    with unit_of_work(rt.engine, write=False) as work:
        states = dict(
            work.session.exec(
                select(Transfer.id, Transfer.state).where(
                    col(Transfer.id).in_([file["transfer_id"] for file in shown_files])
                )
            ).all()
        )
    return [{**file, "transfer_state": states.get(file["transfer_id"])} for file in shown_files]
