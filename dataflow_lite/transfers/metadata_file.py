"""A dataset's metadata.json at its destination: written from the catalog by a transfer of kind
``metadata``, one writer per dataset at a time so that the newest content lands last."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import col, select

from dataflow_lite.store import credentials, layout
from dataflow_lite.store.catalog import metadata_json
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.models import Dataset, Endpoint, Transfer, utcnow
from dataflow_lite.transfers.claims import ACTIVE

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from dataflow_lite.transfers.queue import TransferQueue


def write(queue: TransferQueue, transfer: Transfer) -> None:
    """Write the dataset's metadata.json, as the catalog has it now, at its destination."""
    with session_scope(queue.engine) as session:
        endpoint = session.get(Endpoint, transfer.endpoint_id)
        dataset = session.get(Dataset, transfer.dataset_id)
        user_credentials = credentials.load(
            session, queue.cipher, transfer.user_id, transfer.endpoint_id
        )
        assert endpoint is not None and dataset is not None
        content = metadata_json(session, dataset)
    adapter = queue.adapters.for_endpoint(endpoint.adapter, endpoint.options)
    adapter.write_file(layout.metadata_target(dataset.folder), content, user_credentials)


def in_progress(engine: Engine, transfer: Transfer) -> bool:
    """Whether another metadata.json write of the same dataset holds a live lease."""
    with session_scope(engine) as session:
        return (
            session.exec(
                select(Transfer.id).where(
                    Transfer.dataset_id == transfer.dataset_id,
                    Transfer.kind == "metadata",
                    Transfer.id != transfer.id,
                    col(Transfer.state).in_(ACTIVE),
                    col(Transfer.lease_until) > utcnow(),
                )
            ).first()
            is not None
        )
