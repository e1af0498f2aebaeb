"""Sending small files several to a request (the server's ``dataset-file-bundle``).

One multipart body: ``dataset_id``, a JSON ``manifest`` (each file's path in the dataset, size and
sha256, hashed here beforehand), then one part of the files' bytes in the manifest's order, read
from disk while the body is sent (memory holds one read at a time, whatever the bundle's size).
The server adds all of them or none; a 409 names a path it already has, so a run killed after
the server took a bundle, and before noting so, finds those files there (same sha256: already
sent) and sends the rest again.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .state import Receipt

READ = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What goes into bundles (files up to ``file_bytes``) and how big one bundle gets."""

    file_bytes: int
    files: int = 500
    bytes: int = 64 << 20


def bundles(receipts: list[Receipt], limits: Limits) -> tuple[list[list[Receipt]], list[Receipt]]:
    """The small files grouped into bundles (one dataset each, within ``limits``), and the
    others, to send one by one."""
    groups: list[list[Receipt]] = []
    alone: list[Receipt] = []
    open_by_dataset: dict[int, list[Receipt]] = {}
    for receipt in receipts:
        if receipt.size > limits.file_bytes:
            alone.append(receipt)
            continue
        group = open_by_dataset.get(receipt.dataset_id)
        if (
            group is None
            or len(group) >= limits.files
            or sum(r.size for r in group) + receipt.size > limits.bytes
        ):
            group = open_by_dataset[receipt.dataset_id] = []
            groups.append(group)
        group.append(receipt)
    return groups, alone


class Body:
    """A bundle's multipart body, streamed from the files; its length known beforehand."""

    def __init__(
        self, dataset_id: int, receipts: list[Receipt], progress: Callable[[int], object]
    ) -> None:
        self.boundary = uuid.uuid4().hex
        self.receipts = receipts
        self.progress = progress
        manifest = [{"path": r.target, "size": r.size, "sha256": r.sha256} for r in receipts]
        self.head = (
            self._field("dataset_id", str(dataset_id))
            + self._field("manifest", json.dumps(manifest))
            + (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="files"; '
                'filename="bundle"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
        )
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.length = len(self.head) + sum(r.size for r in receipts) + len(self.tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _field(self, name: str, value: str) -> bytes:
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        # One part of the files' bytes one after the other: the manifest's sizes split them.
        yield self.head
        for receipt in self.receipts:
            left = receipt.size
            with open(receipt.source, "rb") as source:
                while left:
                    chunk = source.read(min(READ, left))
                    if not chunk:
                        # Shorter than hashed: the body can no longer be what it said.
                        raise OSError(f"{receipt.source} shrank while it was sent")
                    left -= len(chunk)
                    yield chunk
                if os.fstat(source.fileno()).st_size != receipt.size:
                    raise OSError(f"{receipt.source} changed while it was sent")
            self.progress(receipt.size)
        yield self.tail
