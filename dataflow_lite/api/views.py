"""Catalog rows shaped for the wire: the dicts the response schemas dump."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlmodel import Session, col, select

from dataflow_lite.adapter import Adapters, TransferAdapter
from dataflow_lite.store import catalog, layout
from dataflow_lite.store.metadata import wire_value
from dataflow_lite.store.models import Dataset, Endpoint, Instrument, MetadataField, Transfer, User
from dataflow_lite.transfers.queue import TransferQueue


def adapters() -> Adapters:
    """The app's installed adapters."""
    return current_app.extensions["dataflow_lite.adapters"]


def transfers() -> TransferQueue:
    """The app's transfer queue."""
    return current_app.extensions["dataflow_lite.transfers"]


def file_states(session: Session, dataset_id: int) -> dict[int, str]:
    """The state of the latest transfer of each of the dataset's files."""
    rows = session.exec(
        select(Transfer.file_id, Transfer.state)
        .where(Transfer.dataset_id == dataset_id, Transfer.kind == "file")
        .order_by(col(Transfer.id))
    )
    return {file_id: state for file_id, state in rows if file_id is not None}


def endpoint_adapter(session: Session, endpoint_id: str) -> tuple[Endpoint, TransferAdapter]:
    """The endpoint with ``endpoint_id`` and an adapter instance serving it."""
    endpoint = session.get(Endpoint, endpoint_id)
    assert endpoint is not None  # datasets reference endpoints by foreign key
    return endpoint, adapters().for_endpoint(endpoint.adapter, endpoint.options)


def dataset_view(session: Session, dataset: Dataset) -> dict[str, Any]:
    """A dataset as DataFlow shows it, plus ``created_at`` and where its folder is."""
    creator = session.get(User, dataset.creator_id)
    instrument = session.get(Instrument, dataset.instrument_id) if dataset.instrument_id else None
    _, adapter = endpoint_adapter(session, dataset.endpoint_id)
    values = catalog.dataset_values(session, dataset.id)  # type: ignore[arg-type]
    states = file_states(session, dataset.id)  # type: ignore[arg-type]
    return {
        "id": dataset.id,
        "created_at": dataset.created_at,
        "name": dataset.name,
        "creator": {"id": creator.id, "name": creator.display_name} if creator else None,
        "dataset_files": [
            {**entry.model_dump(), "transfer_state": states.get(entry.id)}  # type: ignore[arg-type]
            for entry in catalog.dataset_files(session, dataset.id)  # type: ignore[arg-type]
        ],
        "instrument": instrument,
        "metadata_field_values": [
            {
                "id": value.id,
                "field_value": wire_value(value.value),
                "field_name": value.field_name,
                "metadata_field": session.get(MetadataField, value.metadata_field_id)
                if value.metadata_field_id
                else None,
            }
            for value in values
        ],
        "destination": adapter.locate(layout.PurePosixPath(dataset.folder)),
    }
