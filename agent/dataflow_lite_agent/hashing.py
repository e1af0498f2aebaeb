"""The sha256 of a file at the source: in a pass of its own, or from the reads that send it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from .server import AgentError

READ = 1 << 20


class Changed(AgentError):
    """The file changed while it was hashed or sent: it is not complete yet."""


def sha256_of(path: Path, progress: Callable[[int], object] = lambda n: None) -> str:
    """The file's sha256; Changed if its size or time changed meanwhile."""
    before = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(READ):
            digest.update(chunk)
            progress(len(chunk))
    after = os.stat(path)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise Changed(f"{path} changed while it was read")
    return digest.hexdigest()


class HashingReader:
    """The file tuspy reads to send, hashed as it is read in order: the send is the hashing
    pass. A read that skips ahead (a resumed upload) leaves the hash unknown; a read again of
    bytes already hashed (a retried request) is not hashed twice. With ``hashing`` false (the
    hash is known already) it only reads."""

    def __init__(self, path: str, *, hashing: bool = True) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close(), after the send)
        self._digest = hashlib.sha256() if hashing else None
        self._hashed = 0
        self._skipped = False

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:
        position = self._file.tell()
        data = self._file.read(size)
        if self._digest is None:
            return data
        if position > self._hashed:
            self._skipped = True
        elif position + len(data) > self._hashed:
            self._digest.update(memoryview(data)[self._hashed - position :])
            self._hashed = position + len(data)
        return data

    def sha256(self, size: int) -> str | None:
        """The sha256 of the file's ``size`` bytes, if every one of them was read in order."""
        whole = self._digest is not None and not self._skipped and self._hashed == size
        return self._digest.hexdigest() if whole and self._digest else None

    def close(self) -> None:
        self._file.close()
