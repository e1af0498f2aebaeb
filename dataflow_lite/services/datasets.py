"""Datasets: create one, show one, find them (their files: ``dataset_files``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, TypeVar

from sqlalchemy import Row, Select, bindparam, insert
from sqlalchemy import select as select_columns
from sqlmodel import Session, SQLModel, col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit, downloads, user_settings
from dataflow_lite.services.errors import Invalid, NotFound, TooLarge, invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import catalog, layout, metadata, search
from dataflow_lite.store.db import UnitOfWork, unit_of_work
from dataflow_lite.store.metadata import wire_value
from dataflow_lite.store.models import (
    Dataset,
    DatasetFile,
    Endpoint,
    Instrument,
    MetadataField,
    MetadataValue,
    Transfer,
    User,
    row_id,
)

MAX_NAME = 1000
T = TypeVar("T")


def visible_dataset(session: Session, identity: Identity, dataset_id: int) -> Dataset:
    """The dataset, if the identity may see it (NotFound otherwise: its existence stays hidden)."""
    dataset = catalog.find(session, Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} not found")
    authorize(identity, "dataset.read", dataset)
    return dataset


def check_name(name: str) -> str:
    """``name`` if it can name a dataset (not blank, not too long), else Invalid."""
    if not name.strip():
        raise invalid("name", "must not be blank", "the dataset name is blank")
    if len(name) > MAX_NAME:
        raise invalid("name", f"must be at most {MAX_NAME} characters long")
    return name


#: The most bytes of JSON that a finite float (``-1.7976931348623157e+308``), an integer below
#: 10**15, a boolean or null takes.
_SHORT_BYTES = 24


def _short(value: Any) -> bool:
    """Whether ``value``'s JSON text is at most ``_SHORT_BYTES`` long, without writing it."""
    kind = type(value)
    return (
        value is None
        or kind is bool
        or (kind is float and math.isfinite(value))
        or (kind is int and -(10**15) < value < 10**15)
    )


def check_sizes(rt: Runtime, values: Sequence[tuple[str, Any]]) -> None:
    """Refuse more metadata values, or a larger one, than the settings allow (TooLarge)."""
    most = rt.settings["max_metadata_values"]
    if len(values) > most:
        raise TooLarge(
            f"a dataset may have at most {most} metadata values; {len(values)} were given",
            {"metadata_field_values_attributes": [f"must hold at most {most} values"]},
        )
    largest = rt.settings["max_metadata_value_bytes"]
    # A character is at most 6 bytes of JSON text (\\uXXXX): short text needs no encoding, nor
    # does a number, a boolean or null when the limit exceeds their longest JSON (24 bytes).
    too_large = {
        name: [f"is longer than {largest} bytes"]
        for name, value in values
        if not (isinstance(value, str) and len(value) * 6 + 2 <= largest)
        and not (largest >= _SHORT_BYTES and _short(value))
        and len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")) > largest
    }
    if too_large:
        raise TooLarge(
            f"metadata value {next(iter(too_large))!r} is larger than this server's limit of "
            f"{largest} bytes",
            too_large,
        )


def _checked_values(
    session: Session, instrument: Instrument | None, values: Sequence[tuple[str, Any]]
) -> dict[str, MetadataField]:
    fields = catalog.instrument_fields(session, instrument.id if instrument else None)
    try:
        return metadata.validate(values, fields)
    except metadata.InvalidMetadata as error:
        where = (
            f"the metadata does not fit the form of instrument {instrument.name!r}"
            if instrument and error.form_fields
            else "the metadata is not valid"
        )
        messages = {name: [message] for name, message in error.errors.items()}
        raise Invalid(f"{where}: {error}", messages) from error


@use_case("dataset.create")
def create_dataset(
    rt: Runtime,
    identity: Identity,
    name: str,
    instrument_id: int | None,
    values: Sequence[tuple[str, Any]],
) -> dict[str, Any]:
    """Create a dataset on the user's destination; its folder and metadata.json follow."""
    authorize(identity, "dataset.create")
    assert identity.user is not None
    check_name(name)
    check_sizes(rt, values)
    with unit_of_work(rt.engine) as work:
        session = work.session
        instrument = None
        if instrument_id:
            instrument = catalog.find(session, Instrument, instrument_id)
            if instrument is None:
                raise NotFound(f"instrument {instrument_id} not found")
        fields = _checked_values(session, instrument, values)
        endpoint = user_settings.destination(session, identity.user)
        dataset = Dataset(
            name=name,
            creator_id=identity.uid,
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
        if values:
            # One INSERT for all of them: a row object per value held the write lock for seconds.
            session.execute(
                insert(MetadataValue),
                [
                    {
                        "dataset_id": row_id(dataset),
                        "owner_id": dataset.creator_id,
                        "field_name": field_name,
                        "value": value,
                        "metadata_field_id": field.id
                        if (field := fields.get(field_name))
                        else None,
                    }
                    for field_name, value in values
                ],
            )
        session.flush()
        search.reindex(session, row_id(dataset))
        transfer = rt.queue.add(session, dataset, endpoint)
        audit.record(
            work,
            identity,
            "dataset.create",
            "dataset",
            dataset.id,
            {
                "name": name,
                "instrument_id": dataset.instrument_id,
                "endpoint_id": endpoint.id,
                "folder": dataset.folder,
                "metadata": dict(values),
            },
        )
        wake_after_commit(rt, work, transfer)
        return describe(rt, session, dataset)


@use_case("dataset.create")
def persisted_values(rt: Runtime, identity: Identity, instrument_id: int) -> dict[str, Any]:
    """The values of the instrument's "persist" fields in the user's newest dataset on it.

    The new-dataset form starts from them, so that a run of similar datasets is typed once.
    """
    authorize(identity, "dataset.create")
    assert identity.user is not None
    with unit_of_work(rt.engine, write=False) as work:
        session = work.session
        fields = catalog.instrument_fields(session, instrument_id)
        persisting = [field.name for field in fields if field.persist]
        if not persisting:
            return {}
        previous = session.exec(
            select(Dataset.id)
            .where(Dataset.creator_id == identity.user.id, Dataset.instrument_id == instrument_id)
            .order_by(col(Dataset.created_at).desc(), col(Dataset.id).desc())
        ).first()
        if previous is None:
            return {}
        rows = session.exec(
            select(MetadataValue).where(
                MetadataValue.dataset_id == previous,
                col(MetadataValue.field_name).in_(persisting),
            )
        )
        return {row.field_name: row.value for row in rows if row.value is not None}


def wake_after_commit(rt: Runtime, work: UnitOfWork, transfer: Transfer) -> None:
    """Wake a worker for ``transfer`` once ``work`` has committed."""
    transfer_id = row_id(transfer)
    work.after_commit(lambda: rt.queue.wake(transfer_id))


@use_case("dataset.read")
def get_dataset(rt: Runtime, identity: Identity, dataset_id: int) -> dict[str, Any]:
    """One dataset as DataFlow shows it, with its files, metadata and destination."""
    with unit_of_work(rt.engine, write=False) as work:
        return describe(rt, work.session, visible_dataset(work.session, identity, dataset_id))


def describe(rt: Runtime, session: Session, dataset: Dataset) -> dict[str, Any]:
    """A dataset as DataFlow shows it, plus ``created_at`` and where its folder is."""
    return describe_all(rt, session, [dataset])[0]


def describe_all(
    rt: Runtime, session: Session, datasets: Sequence[Dataset]
) -> list[dict[str, Any]]:
    """Datasets as :func:`describe` shows each, with one query for all their files (values...).

    Files, values and transfers are read as plain rows, not ORM objects: a page of 20 datasets
    holds 60 files and 100 values, and building objects for them cost more than the search.
    """
    ids = [row_id(dataset) for dataset in datasets]
    files = _by_dataset(session, _FILES, ids)
    values = _by_dataset(session, _VALUES, ids)
    states = {
        ident: {row.file_id: row for row in rows if row.file_id is not None}
        for ident, rows in _by_dataset(session, _STATES, ids).items()
    }
    forms: dict[int | None, dict[Any, MetadataField]] = {}
    held: dict[tuple[Any, Any], Any] = {}
    shown = []
    for dataset, dataset_id in zip(datasets, ids, strict=True):
        if dataset.instrument_id not in forms:
            forms[dataset.instrument_id] = {
                field.id: field
                for field in catalog.instrument_fields(session, dataset.instrument_id)
            }
        parts = (files[dataset_id], values[dataset_id], states[dataset_id])
        shown.append(_described(rt, session, dataset, *parts, forms[dataset.instrument_id], held))
    return shown


def _rows_of(model: type[SQLModel], columns: Sequence[str], *where: Any) -> Select[Any]:
    """The ``columns`` of ``model``'s rows of the datasets ``ids``, in the order added.

    Made once: building a query costs more than SQLite takes to answer it.
    """
    table = model.__table__.c  # type: ignore[attr-defined]
    return (
        select_columns(*(table[name] for name in columns))
        .where(table.dataset_id.in_(bindparam("ids", expanding=True)), *where)
        .order_by(table.id)
    )


_FILES = _rows_of(DatasetFile, tuple(DatasetFile.model_fields))
_VALUES = _rows_of(MetadataValue, tuple(MetadataValue.model_fields))
_STATES = _rows_of(
    Transfer,
    ("id", "dataset_id", "file_id", "state", "last_error", "bytes_moved"),
    col(Transfer.kind) == "file",
)


def _by_dataset(session: Session, query: Select[Any], ids: list[int]) -> dict[int, list[Row[Any]]]:
    """The rows ``query`` finds for ``ids``, under each dataset's id."""
    grouped: dict[int, list[Row[Any]]] = {ident: [] for ident in ids}
    for row in session.execute(query, {"ids": ids}):
        grouped[row.dataset_id].append(row)
    return grouped


def _described(
    rt: Runtime,
    session: Session,
    dataset: Dataset,
    files: Sequence[Row[Any]],
    values: Sequence[Row[Any]],
    states: dict[int, Row[Any]],
    fields: dict[Any, MetadataField],
    held: dict[tuple[Any, Any], Any],
) -> dict[str, Any]:
    creator = _held(session, User, dataset.creator_id, held)
    instrument = _held(session, Instrument, dataset.instrument_id, held)
    endpoint = _held(session, Endpoint, dataset.endpoint_id, held)
    assert endpoint is not None  # datasets reference endpoints by foreign key
    if ("locator", endpoint.id) not in held:
        held["locator", endpoint.id] = rt.adapters.locator(endpoint)
    return {
        "id": dataset.id,
        "created_at": dataset.created_at,
        "name": dataset.name,
        "creator": {"id": creator.id, "name": creator.display_name} if creator else None,
        "dataset_files": [
            {
                **entry._asdict(),
                "transfer_state": states[entry.id].state if entry.id in states else None,
                "transfer_error": states[entry.id].last_error if entry.id in states else None,
                "transfer_bytes": states[entry.id].bytes_moved if entry.id in states else 0,
            }
            for entry in files
        ],
        "instrument": instrument,
        "metadata_field_values": [
            {
                "id": value.id,
                "field_value": wire_value(value.value),
                "field_name": value.field_name,
                "metadata_field": fields.get(value.metadata_field_id),
                "value": value.value,
            }
            for value in values
        ],
        "destination": held["locator", endpoint.id](PurePosixPath(dataset.folder)),
        "folder": dataset.folder,
        "endpoint": {"name": endpoint.name, "adapter": endpoint.adapter},
        "read_back": downloads.reads_back(rt, endpoint),
    }


def _held(
    session: Session, model: type[T], ident: Any, held: dict[tuple[Any, Any], Any]
) -> T | None:
    """``session.get`` kept for one call: the session holds loaded rows only while we do."""
    if ident is not None and (model, ident) not in held:
        held[model, ident] = session.get(model, ident)
    return held.get((model, ident))
