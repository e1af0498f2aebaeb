"""Rebuilding the catalog from a destination's ``metadata.json`` files, after a lost database.

The endpoint's adapter walks its dataset folders (a local endpoint only: the destination is
hostile ground, walked without following a link, and a folder another account made is never
read). Each folder's ``metadata.json`` says who made the dataset (by username), on which
instrument (by name), when, with which metadata and which files (size and sha256). A dataset
the catalog lacks is restored with them, under its old id when that is free; one the catalog has
gets the files it lacks. Every listed file is compared with the bytes there: one that is missing
or whose bytes no longer match is reported by name, and only files that are there are catalogued
(with the sha256 ``metadata.json`` recorded, so that a mismatch stays visible). Files not in
``metadata.json`` are reported and not catalogued. Users and instruments are never invented: a
dataset whose creator or instrument is unknown is reported, so that adding them and running
``reindex`` again restores it. Each restored dataset is one short transaction with its own
audit event; a dry run reads and reports, and writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, select

from dataflow_lite.adapter import AdapterError, FoundFolder
from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit, endpoints
from dataflow_lite.services.errors import Conflict
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import catalog, metadata, search
from dataflow_lite.store.db import follow_explicit_ids, unit_of_work
from dataflow_lite.store.models import (
    Dataset,
    DatasetFile,
    Instrument,
    MetadataValue,
    User,
    row_id,
)


@dataclass
class ReindexReport:
    """What ``reindex`` found and did (or, in a dry run, would do), line by line."""

    endpoint: str
    dry_run: bool
    folders: int = 0
    restored: int = 0
    files_restored: int = 0
    lines: list[str] = field(default_factory=list)


@dataclass
class _Listed:
    path: PurePosixPath
    size: int
    sha256: str
    uploaded_at: datetime


def _time(text: Any) -> datetime:
    return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _listed(document: dict[str, Any]) -> list[_Listed]:
    return [
        _Listed(PurePosixPath(entry["path"]), int(entry["size"]), str(entry["sha256"]),
                _time(entry.get("uploaded_at") or document["dataset"]["created_at"]))
        for entry in document.get("files", [])
    ]  # fmt: skip


@use_case("dataset.reindex")
def reindex_endpoint(
    rt: Runtime, identity: Identity, endpoint_name: str, *, dry_run: bool = False
) -> ReindexReport:
    """Restore into the catalog what the endpoint's ``metadata.json`` files describe and the
    catalog lacks; report each file that is missing or altered, by name."""
    authorize(identity, "dataset.reindex")
    with unit_of_work(rt.engine, write=False) as work:
        endpoint = endpoints.named_endpoint(work.session, endpoint_name)
    adapter = rt.adapters.for_endpoint(endpoint.adapter, endpoint.options)
    report = ReindexReport(endpoint=endpoint.name, dry_run=dry_run)
    try:
        for found in adapter.walk_datasets():
            report.lines += found.refused
            if found.folder.parts:
                report.folders += 1
                _restore(rt, identity, adapter, endpoint.id, found, report)
    except AdapterError as error:
        raise Conflict(f"endpoint {endpoint.name}: {error}") from error
    return report


def _restore(
    rt: Runtime,
    identity: Identity,
    adapter: Any,
    endpoint_id: str,
    found: FoundFolder,
    report: ReindexReport,
) -> None:
    dry_run = report.dry_run
    where = adapter.locate(found.folder)
    if found.metadata is None:
        report.lines.append(f"{where}: no metadata.json: not restored")
        return
    try:
        document = json.loads(found.metadata)
        described = document["dataset"]
        listed = _listed(document)
        name, created_at = str(described["name"]), _time(described["created_at"])
        values = metadata.flatten(described.get("metadata") or {})
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        report.lines.append(f"{where}/metadata.json cannot be read ({error}): not restored")
        return
    present = []
    for entry in listed:
        shown = f"{where}/{entry.path}"
        size = found.files.get(str(entry.path))
        if size is None:
            report.lines.append(f"missing: {shown}")
            continue
        if size != entry.size or adapter.file_sha256(found.folder / entry.path) != entry.sha256:
            report.lines.append(f"altered: {shown} (its bytes no longer match metadata.json)")
        present.append(entry)
    for extra in sorted(set(found.files) - {str(entry.path) for entry in listed}):
        report.lines.append(f"extra: {where}/{extra} (not in metadata.json: not catalogued)")
    with unit_of_work(rt.engine, write=not dry_run) as work:
        session = work.session
        dataset = session.exec(
            select(Dataset).where(
                Dataset.endpoint_id == endpoint_id, Dataset.folder == str(found.folder)
            )
        ).first()
        created = dataset is None
        if dataset is None:
            owner = _creator(session, described.get("creator"))
            if owner is None:
                report.lines.append(f"{where}: its creator is not a user here: not restored")
                return
            instrument = _instrument(session, described.get("instrument"))
            if instrument is False:
                report.lines.append(f"{where}: its instrument is not known here: not restored")
                return
            dataset = Dataset(
                name=name,
                creator_id=row_id(owner),
                instrument_id=instrument.id if isinstance(instrument, Instrument) else None,
                endpoint_id=endpoint_id,
                folder=str(found.folder),
                created_at=created_at,
            )
            old_id = described.get("id")
            if isinstance(old_id, int) and catalog.find(session, Dataset, old_id) is None:
                dataset.id = old_id  # the same id as before the loss, when nobody took it
            report.restored += 1
            report.lines.append(f"restored dataset {name!r} ({where})")
            if dry_run:
                report.files_restored += len(present)
                return
            session.add(dataset)
            session.flush()
            follow_explicit_ids(session.connection(), "dataset")
            _values(session, dataset, values)
        known = {
            PurePosixPath(row.relative_path, row.name)
            for row in catalog.dataset_files(session, row_id(dataset))
        }
        adding = [entry for entry in present if entry.path not in known]
        report.files_restored += len(adding)
        if dry_run or not (adding or created):
            return
        _files(session, row_id(dataset), adding, known)
        session.flush()
        search.reindex(session, row_id(dataset))
        summary = {
            "folder": str(found.folder),
            "files": [str(entry.path) for entry in adding],
            "source": "metadata.json",
        }
        audit.record(work, identity, "dataset.reindex", "dataset", dataset.id, summary)


def _creator(session: Session, described: Any) -> User | None:
    """The user ``metadata.json`` names: by username, else (an earlier release's file, which
    named the creator only by id and display name) the user with that id and name."""
    if not isinstance(described, dict):
        return None
    if described.get("username"):
        return session.exec(select(User).where(User.username == described["username"])).first()
    user = (
        catalog.find(session, User, described["id"])
        if isinstance(described.get("id"), int)
        else None
    )
    return user if user is not None and user.display_name == described.get("name") else None


def _instrument(session: Session, described: Any) -> Instrument | None | bool:
    """The instrument ``metadata.json`` names (by name), None for none, False if unknown."""
    if not described:
        return None
    found = session.exec(select(Instrument).where(Instrument.name == described.get("name"))).first()
    return found if found is not None else False


def _values(session: Session, dataset: Dataset, values: list[tuple[str, Any]]) -> None:
    if not values:
        return
    form = {row.name: row.id for row in catalog.instrument_fields(session, dataset.instrument_id)}
    session.execute(
        insert(MetadataValue),
        [
            {
                "dataset_id": row_id(dataset),
                "owner_id": dataset.creator_id,
                "field_name": name,
                "value": value,
                "metadata_field_id": form.get(name),
            }
            for name, value in values
        ],
    )


def _files(
    session: Session, dataset_id: int, adding: list[_Listed], known: set[PurePosixPath]
) -> None:
    for entry in adding:
        parent = entry.path.parent
        session.add(
            DatasetFile(
                dataset_id=dataset_id,
                name=entry.path.name,
                relative_path="" if str(parent) == "." else str(parent),
                file_length=entry.size,
                sha256=entry.sha256,
                created_at=entry.uploaded_at,
            )
        )
        for depth in range(1, len(parent.parts) + 1):
            folder = PurePosixPath(*parent.parts[:depth])
            if folder not in known:
                known.add(folder)
                session.add(
                    DatasetFile(
                        dataset_id=dataset_id,
                        name=folder.name,
                        relative_path="/".join(folder.parts[:-1]),
                        is_directory=True,
                        created_at=entry.uploaded_at,
                    )
                )
