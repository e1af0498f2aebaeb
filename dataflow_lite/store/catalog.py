"""Reading the catalog: rows by id, a dataset's values and files, and its ``metadata.json``.

The services call these inside their unit of work; nothing here commits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, TypeVar

from sqlmodel import Session, col, select

from dataflow_lite.store import metadata
from dataflow_lite.store.models import (
    Dataset,
    DatasetFile,
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


def instrument_fields(session: Session, instrument_id: int | None) -> Sequence[MetadataField]:
    """The metadata form of an instrument, in order (none for the untitled instrument)."""
    if not instrument_id:
        return []
    return session.exec(
        select(MetadataField)
        .where(MetadataField.instrument_id == instrument_id)
        .order_by(col(MetadataField.position), col(MetadataField.id))
    ).all()


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


def file_at(session: Session, dataset_id: int, parent: str, name: str) -> DatasetFile | None:
    """The dataset's file or directory ``name`` in folder ``parent``, if there is one."""
    return session.exec(
        select(DatasetFile).where(
            DatasetFile.dataset_id == dataset_id,
            DatasetFile.relative_path == parent,
            DatasetFile.name == name,
        )
    ).first()


def metadata_document(session: Session, dataset: Dataset) -> dict[str, Any]:
    """What ``metadata.json`` holds: the dataset, its nested metadata and units, and its files.

    It holds what ``dataflow-lite reindex`` needs to restore the dataset into an empty catalog:
    the creator's username, the instrument's name, the creation time, every value with its JSON
    type, and each file's path, size, sha256 and time of upload.

    ``units`` is nested like ``metadata`` and holds the unit of each value whose form field has
    one (``{"Stage": {"Temperature": "K"}}``); the API's wire does not change.
    """
    creator = session.get(User, dataset.creator_id)
    instrument = session.get(Instrument, dataset.instrument_id) if dataset.instrument_id else None
    values = dataset_values(session, row_id(dataset))
    form = {field.id: field.unit for field in instrument_fields(session, dataset.instrument_id)}
    units = {
        value.field_name: form[value.metadata_field_id]
        for value in values
        if value.metadata_field_id in form and form[value.metadata_field_id]
    }
    files = [row for row in dataset_files(session, row_id(dataset)) if not row.is_directory]
    return {
        "dataset": {
            "id": dataset.id,
            "name": dataset.name,
            # The username lets ``reindex`` give the dataset back to its owner after a lost
            # catalog (ids are the lost database's; ``name`` is what DataFlow shows).
            "creator": {
                "id": creator.id,
                "name": creator.display_name,
                "username": creator.username,
            }
            if creator
            else None,
            "instrument": {"id": instrument.id, "name": instrument.name} if instrument else None,
            "created_at": dataset.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "metadata": metadata.nest((value.field_name, value.value) for value in values),
            "units": metadata.nest_units((value.field_name for value in values), units),
        },
        "files": [
            {
                "path": str(PurePosixPath(row.relative_path, row.name)),
                "size": row.file_length,
                "sha256": row.sha256,
                "uploaded_at": row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for row in files
        ],
    }


def metadata_json(session: Session, dataset: Dataset) -> bytes:
    """The content of the dataset's ``metadata.json``, read from the catalog now."""
    document = metadata_document(session, dataset)
    return json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"
