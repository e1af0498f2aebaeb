"""Downloads: a dataset's file read back from its destination, for whoever may see the dataset.

Only a file whose transfer is done is offered (its bytes were verified there), and only from an
endpoint whose adapter reads files back (``can_read_back``); the adapter opens it without
following links. A file whose size at the destination is not the catalogued one is refused: it
changed after it was verified.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from sqlmodel import col, select

from dataflow_lite.adapter import DONE, AdapterError
from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services.errors import Conflict, NotFound
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import catalog, credentials, layout
from dataflow_lite.store.db import unit_of_work
from dataflow_lite.store.models import Dataset, DatasetFile, Endpoint, Transfer


@dataclass(frozen=True)
class Download:
    """A file to stream: its name, catalogued size and sha256, and its bytes, open at the start."""

    name: str
    size: int
    sha256: str | None
    stream: BinaryIO


def reads_back(rt: Runtime, endpoint: Endpoint) -> bool:
    """Whether files on ``endpoint`` can be downloaded through this server."""
    try:
        return rt.adapters.get_class(endpoint.adapter).can_read_back
    except LookupError:
        return False


@use_case("file.read")
def open_download(rt: Runtime, identity: Identity, dataset_id: int, file_id: int) -> Download:
    """The file ``file_id`` of the dataset, open at its destination (NotFound, Conflict)."""
    with unit_of_work(rt.engine, write=False) as work:
        session = work.session
        dataset = catalog.find(session, Dataset, dataset_id)
        if dataset is None:
            raise NotFound(f"dataset {dataset_id} not found")
        authorize(identity, "file.read", dataset)
        row = catalog.find(session, DatasetFile, file_id)
        if row is None or row.dataset_id != dataset_id or row.is_directory:
            raise NotFound(f"file {file_id} not found in dataset {dataset_id}")
        endpoint = session.get(Endpoint, dataset.endpoint_id)
        assert endpoint is not None  # datasets reference endpoints by foreign key
        transfer = session.exec(
            select(Transfer)
            .where(Transfer.file_id == file_id, Transfer.kind == "file")
            .order_by(col(Transfer.id).desc())
        ).first()
        kept = credentials.load(session, rt.cipher, dataset.creator_id, endpoint.id)
    relative = PurePosixPath(row.relative_path)
    path = relative / row.name
    if not reads_back(rt, endpoint):
        raise Conflict(f"files on {endpoint.name} ({endpoint.adapter}) cannot be read back here")
    if transfer is None or transfer.state != DONE:
        state = transfer.state if transfer else "not queued"
        raise Conflict(f"{path} is not at its destination yet ({state}): try once it is done")
    adapter = rt.adapters.for_endpoint(endpoint.adapter, endpoint.options)
    try:
        stream = adapter.open_file(layout.file_target(dataset.folder, relative, row.name), kept)
    except AdapterError as error:
        raise Conflict(f"{path} cannot be read at its destination: {error}") from error
    try:
        size = os.fstat(stream.fileno()).st_size
    except (OSError, ValueError):  # a stream with no file behind it: the adapter's word
        size = row.file_length or 0
    if size != row.file_length:
        stream.close()
        raise Conflict(
            f"{path} at its destination is {size} bytes, not the {row.file_length} that were "
            "verified: it changed there, and is not offered"
        )
    return Download(row.name, size, row.sha256, stream)
