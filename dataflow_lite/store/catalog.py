"""Datasets and their files in the catalog, and the ``metadata.json`` kept beside them.

Views call these functions inside the request's transaction: whatever fails, the transaction
rolls back and no half-written row stays behind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, TypeVar

from sqlmodel import Session, col, select

from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.uploads import StagedUpload
from dataflow_lite.store import layout, metadata, search
from dataflow_lite.store.models import (
    Dataset,
    DatasetFile,
    Endpoint,
    Instrument,
    MetadataField,
    MetadataValue,
    User,
    row_id,
)

T = TypeVar("T")


#: Instrument 0: datasets that name no instrument.
UNTITLED_INSTRUMENT_NAME = "Untitled instrument"

# SQLite integers are 64-bit: a larger id names nothing (and must not reach the driver).
MAX_ID = 2**63 - 1


def find(session: Session, model: type[T], ident: int) -> T | None:
    """The row of ``model`` with id ``ident``, or None (also for ids SQLite cannot hold)."""
    return session.get(model, ident) if 0 < ident <= MAX_ID else None


def get_instrument(session: Session, instrument_id: int) -> Instrument:
    """The instrument with ``instrument_id``, or 404."""
    instrument = find(session, Instrument, instrument_id)
    if instrument is None:
        raise DataflowError(404, f"instrument {instrument_id} not found")
    return instrument


def instrument_fields(session: Session, instrument_id: int | None) -> Sequence[MetadataField]:
    """The metadata form of an instrument, in order (none for the untitled instrument)."""
    if not instrument_id:
        return []
    return session.exec(
        select(MetadataField)
        .where(MetadataField.instrument_id == instrument_id)
        .order_by(col(MetadataField.position), col(MetadataField.id))
    ).all()


def get_dataset(session: Session, user: User, dataset_id: int) -> Dataset:
    """The dataset ``dataset_id`` if ``user`` may see it, else 404 (others' stay hidden)."""
    dataset = find(session, Dataset, dataset_id)
    if dataset is None or not (user.is_admin or dataset.creator_id == user.id):
        raise DataflowError(404, f"dataset {dataset_id} not found")
    return dataset


def create_dataset(
    session: Session,
    user: User,
    name: str,
    instrument_id: int | None,
    values: Sequence[tuple[str, Any]],
    endpoint: Endpoint,
) -> Dataset:
    """Create a dataset with its metadata, checked against its instrument's form."""
    instrument = get_instrument(session, instrument_id) if instrument_id else None
    try:
        fields = metadata.validate(values, instrument_fields(session, instrument_id))
    except metadata.InvalidMetadata as error:
        raise DataflowError(
            400, f"the metadata does not fit the instrument's form: {error}", error.errors
        ) from error
    dataset = Dataset(
        name=name,
        creator_id=row_id(user),
        instrument_id=instrument.id if instrument else None,
        endpoint_id=endpoint.id,
        folder="",
    )
    session.add(dataset)
    session.flush()
    folder = str(
        layout.dataset_folder(instrument.name if instrument else None, dataset.created_at, name)
    )
    taken = session.exec(
        select(Dataset.id).where(Dataset.endpoint_id == endpoint.id, Dataset.folder == folder)
    ).first()
    # Slugs never hold "-": a suffix with one cannot collide with another dataset's folder.
    dataset.folder = f"{folder}-{dataset.id}" if taken else folder
    for field_name, value in values:
        field = fields.get(field_name)
        session.add(
            MetadataValue(
                dataset_id=row_id(dataset),
                field_name=field_name,
                value=value,
                metadata_field_id=field.id if field else None,
            )
        )
    session.flush()
    search.reindex(session, row_id(dataset))
    return dataset


def dataset_values(session: Session, dataset_id: int) -> Sequence[MetadataValue]:
    """A dataset's metadata values, in the order they were given."""
    return session.exec(
        select(MetadataValue)
        .where(MetadataValue.dataset_id == dataset_id)
        .order_by(col(MetadataValue.id))
    ).all()


def dataset_files(session: Session, dataset_id: int) -> Sequence[DatasetFile]:
    """A dataset's files and directories, in the order they were added."""
    return session.exec(
        select(DatasetFile)
        .where(DatasetFile.dataset_id == dataset_id)
        .order_by(col(DatasetFile.id))
    ).all()


def _entry(session: Session, dataset_id: int, parent: str, name: str) -> DatasetFile | None:
    return session.exec(
        select(DatasetFile).where(
            DatasetFile.dataset_id == dataset_id,
            DatasetFile.relative_path == parent,
            DatasetFile.name == name,
        )
    ).first()


def _ensure_directories(session: Session, dataset: Dataset, relative: PurePosixPath) -> None:
    """One directory entry per component of ``relative``, each once per dataset."""
    for depth, name in enumerate(relative.parts):
        parent = "/".join(relative.parts[:depth])
        entry = _entry(session, row_id(dataset), parent, name)
        if entry is None:
            session.add(
                DatasetFile(
                    dataset_id=row_id(dataset), name=name, relative_path=parent, is_directory=True
                )
            )
            session.flush()
        elif not entry.is_directory:
            raise DataflowError(
                409,
                f"{PurePosixPath(parent, name)} is a file in dataset {dataset.id}, not a directory",
            )


def add_file(
    session: Session, dataset: Dataset, relative: PurePosixPath, upload: StagedUpload
) -> DatasetFile:
    """Record an uploaded file (and its new directories) in the dataset.

    409 when the dataset already has a file or directory at that path: nothing is overwritten.
    The transfer queue moves the bytes afterwards.
    """
    try:
        name = layout.check_file_name(upload.filename or "", what="file name")
    except layout.UnsafePath as error:
        raise DataflowError(400, str(error), {"file": [str(error)]}) from error
    if (relative.parts[:1] or (name,)) == (layout.METADATA_FILE,):
        raise DataflowError(
            409, f"{layout.METADATA_FILE} at the dataset root is kept by the server"
        )
    parent = str(relative) if relative.parts else ""
    if _entry(session, row_id(dataset), parent, name):
        raise DataflowError(
            409, f"dataset {dataset.id} already has {relative / name}: nothing was overwritten"
        )
    row = DatasetFile(
        dataset_id=row_id(dataset),
        name=name,
        relative_path=parent,
        file_length=upload.size,
        file_type=upload.content_type,
        sha256=upload.sha256,
    )
    session.add(row)
    session.flush()
    # After the file, as DataFlow lists them: the file first, then its new directories.
    _ensure_directories(session, dataset, relative)
    search.reindex(session, row_id(dataset))
    return row


def metadata_document(session: Session, dataset: Dataset) -> dict[str, Any]:
    """What ``metadata.json`` holds: the dataset, its nested metadata, and its files."""
    creator = session.get(User, dataset.creator_id)
    instrument = session.get(Instrument, dataset.instrument_id) if dataset.instrument_id else None
    values = dataset_values(session, row_id(dataset))
    files = [entry for entry in dataset_files(session, row_id(dataset)) if not entry.is_directory]
    return {
        "dataset": {
            "id": dataset.id,
            "name": dataset.name,
            "creator": {"id": creator.id, "name": creator.display_name} if creator else None,
            "instrument": {"id": instrument.id, "name": instrument.name} if instrument else None,
            "created_at": dataset.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "metadata": metadata.nest((value.field_name, value.value) for value in values),
        },
        "files": [
            {
                "path": str(PurePosixPath(entry.relative_path, entry.name)),
                "size": entry.file_length,
                "sha256": entry.sha256,
                "uploaded_at": entry.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for entry in files
        ],
    }


def metadata_json(session: Session, dataset: Dataset) -> bytes:
    """The content of the dataset's ``metadata.json``, read from the catalog now."""
    document = metadata_document(session, dataset)
    return json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"
