"""Streaming uploads: a multipart body read once, its file written to staging while hashed.

Flask's ``request.files`` spools each file to a temporary file and copies it again on ``save``.
Here the body is read from ``request.stream`` in large chunks through Werkzeug's sans-IO
``MultipartDecoder``: the file part goes straight to one file in the staging area, sha256 is
computed on the way, and nothing larger than a chunk is ever held in memory.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from werkzeug.exceptions import BadRequest, ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    State,
)

from dataflow_lite.adapter import fsync_directory, lock_for_writing
from dataflow_lite.store import layout

CHUNK = 1 << 20
FILE_PART = "file"


class UploadRefused(ValueError):
    """An upload this server will not take; ``status`` is the HTTP status that says why."""

    status = 400


class MalformedUpload(UploadRefused):
    """The body is not a multipart upload this server can take; the message says why."""


class UploadTooLarge(UploadRefused):
    """The body is over one of the server's limits (parts, part headers); the message names it."""

    status = 413


class StagingFull(UploadRefused):
    """The staging area has no room left (ENOSPC, or a quota): nothing of the upload is kept."""

    status = 507


@dataclass(frozen=True)
class Limits:
    """The bounds of one multipart upload, from the settings."""

    field_bytes: int
    parts: int
    header_bytes: int


@dataclass
class StagedUpload:
    """What arrived: the form fields, and the file written to the staging area.

    The staged file stays open with an exclusive ``flock`` (``lock``) until the catalog owns it
    (``release``) or it is discarded: a worker's start-up sweep removes only staged files that
    no transfer names and no live process holds, so a web worker killed mid-upload leaves
    nothing for good, and an upload still arriving in another worker is never taken for debris.
    A lock rather than an age: a slow upload can be older than any grace period.
    """

    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    content_type: str = ""
    size: int = 0
    sha256: str = ""
    #: The open descriptor holding the staged file's lock, until ``release``.
    lock: int | None = None

    def release(self) -> None:
        """Let go of the staged file's lock: call once the catalog names it (or it is gone)."""
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None

    def discard(self) -> None:
        """Remove the staged file, if it is still there, and let go of its lock."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.release()


def boundary_of(content_type: str | None) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    if mimetype != "multipart/form-data":
        raise MalformedUpload("the upload must be multipart/form-data")
    boundary = options.get("boundary", "")
    if not boundary:
        raise MalformedUpload("the multipart/form-data body has no boundary")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedUpload("the multipart boundary is not ASCII") from None


def part_data(events: Iterator[object]) -> Iterator[bytes]:
    """The chunks of the current part's data, up to the part's end."""
    for event in events:
        if not isinstance(event, Data):
            raise MalformedUpload("a multipart part ended without data")
        yield event.data
        if not event.more_data:
            return


def body_events(decoder: MultipartDecoder, stream: IO[bytes], limits: Limits) -> Iterator[object]:
    """Every event the decoder finds in ``stream``, reading it in large chunks."""
    while True:
        chunk = stream.read(CHUNK)
        try:
            decoder.receive_data(chunk or None)
        except RequestEntityTooLarge:
            # The decoder buffers at most a chunk and a field: only text before the first part
            # (or between parts) that never reaches a boundary grows past that.
            raise UploadTooLarge(
                "the multipart body has more than "
                f"{decoder.max_form_memory_size} bytes outside any part"
            ) from None
        while not isinstance(event := decoder.next_event(), NeedData):
            yield event
            if isinstance(event, Epilogue):
                return
        if decoder.state == State.PART and len(decoder.buffer) > limits.header_bytes:
            raise _headers_too_large(limits)  # headers still arriving, and already too long
        if not chunk:
            raise MalformedUpload("the multipart body ended before its closing boundary")


def _headers_too_large(limits: Limits) -> UploadTooLarge:
    return UploadTooLarge(
        f"a multipart part's headers are longer than this server's limit of "
        f"{limits.header_bytes} bytes"
    )


def _check_part(event: Field | File, parts: int, limits: Limits) -> None:
    """Refuse the ``parts``-th part when there are too many, or its headers are too long."""
    if parts > limits.parts:
        raise UploadTooLarge(
            f"the upload has more than this server's limit of {limits.parts} multipart parts"
        )
    header_bytes = sum(len(name) + len(value) + 4 for name, value in event.headers.items())
    if header_bytes > limits.header_bytes:
        raise _headers_too_large(limits)


class DirectWriter:
    """Writes a new file in large aligned blocks with O_DIRECT, past the page cache.

    Copying an upload into the page cache costs the kernel more CPU than hashing it, and fills
    the cache with bytes nobody reads soon. Where the filesystem refuses O_DIRECT (tmpfs), or
    for the last partial block, it writes through the cache as usual.
    """

    BLOCK = 4 << 20

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = mmap.mmap(-1, self.BLOCK)  # page-aligned, as O_DIRECT requires
        self.filled = 0
        self.direct = set_direct(fd, True)

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` to the file."""
        if not self.direct:
            _write_all(self.fd, data)
            return
        view = memoryview(data)
        while view:
            taken = min(len(view), self.BLOCK - self.filled)
            self.buffer[self.filled : self.filled + taken] = view[:taken]
            self.filled += taken
            view = view[taken:]
            if self.filled == self.BLOCK:
                self._write_block()

    def _write_block(self) -> None:
        try:
            _write_all(self.fd, self.buffer)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            # Some filesystems accept the flag and refuse the write: go through the cache.
            self.direct = set_direct(self.fd, False)
            _write_all(self.fd, self.buffer)
        self.filled = 0

    def receive(
        self, readinto: Callable[[memoryview], int], most: int, seen: Callable[[memoryview], object]
    ) -> int:
        """Read up to ``most`` bytes with ``readinto`` straight into the buffer and append them.

        ``seen`` is shown them first (to hash them). No copy in Python: a socket's ``recv_into``
        fills the aligned buffer itself. Return how many bytes came (0: the input ended).
        """
        if not self.direct:
            scratch = bytearray(min(most, CHUNK))
            with memoryview(scratch) as view:
                got = readinto(view)
                seen(view[:got])
                _write_all(self.fd, scratch, got)
            return got
        with memoryview(self.buffer) as whole:
            room = min(most, self.BLOCK - self.filled)
            with whole[self.filled : self.filled + room] as free:
                got = readinto(free)
                with free[:got] as arrived:
                    seen(arrived)
        self.filled += got
        if self.filled == self.BLOCK:
            self._write_block()
        return got

    def sync(self) -> bool:
        """Sync what was written, if nothing is held back in the buffer; whether it did.

        A resumable upload calls it to make its progress durable mid-request; with a partial
        block buffered it waits for the next whole one rather than break O_DIRECT's alignment.
        """
        if self.filled:
            return False
        os.fsync(self.fd)
        return True

    def release(self) -> None:
        """Let go of the buffer without writing it (after an error); safe to call twice."""
        if not self.buffer.closed:
            self.buffer.close()

    def close(self, sync: bool = True) -> None:
        """Write what is left, sync the file (unless the caller syncs it with others), and
        release the buffer (not the descriptor)."""
        if self.filled:
            set_direct(self.fd, False)  # the tail is not a whole block
            _write_all(self.fd, self.buffer, self.filled)
            self.filled = 0
        if sync:
            os.fsync(self.fd)
        self.buffer.close()


def set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; return whether it is on."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        return False
    return on


def _write_all(
    fd: int, data: bytes | bytearray | memoryview | mmap.mmap, length: int | None = None
) -> None:
    """Write ``data`` (its first ``length`` bytes) to ``fd``.

    Every view of an mmap is released even when a write fails (ENOSPC), or the buffer could
    not be closed while the exception's traceback holds the view.
    """
    with memoryview(data) as whole:
        end = len(whole) if length is None else length
        done = 0
        while done < end:
            with whole[done:end] as rest:
                done += os.write(fd, rest)


def _new_staged_file(staging_dir: Path) -> tuple[int, Path]:
    """A new file in the staging area, open and locked as being written (see ``StagedUpload``)."""
    while True:
        fd, name = tempfile.mkstemp(
            dir=staging_dir, prefix=layout.STAGED_PREFIX, suffix=layout.STAGED_SUFFIX
        )
        if lock_for_writing(fd, Path(name)):
            return fd, Path(name)
        os.close(fd)  # a start-up sweep took it for debris before the lock: make another


@contextmanager
def staged_file(
    staging_dir: Path, upload: StagedUpload, sync: bool = True
) -> Iterator[DirectWriter]:
    """A new staged file for ``upload``, synced with its folder at the block's end unless ``sync``
    is False (the caller syncs many files at once); removed on an error."""
    fd, upload.path = _new_staged_file(staging_dir)
    upload.lock = fd
    writer = None
    try:
        # Landed files are readable like any file the server writes (mkstemp makes them 0600).
        os.fchmod(fd, 0o644 & ~_umask())
        writer = DirectWriter(fd)
        yield writer
        writer.close(sync)
        if sync:
            fsync_directory(staging_dir)  # the staged name must survive a crash, as its bytes do
    except BaseException:
        if writer is not None:
            writer.release()
        upload.discard()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def stage_upload(
    stream: IO[bytes], content_type: str | None, staging_dir: Path, limits: Limits
) -> StagedUpload:
    """Read a multipart body from ``stream`` and stage its ``file`` part.

    Return the fields and the staged file; on any error nothing is left in the staging area.
    Raise MalformedUpload for a body that is not a well-formed upload with exactly one file,
    UploadTooLarge for one over ``limits``, and StagingFull when the staging area is full.
    """
    decoder = MultipartDecoder(
        boundary_of(content_type), max_form_memory_size=CHUNK + limits.field_bytes
    )
    upload = StagedUpload()
    try:
        _read_parts(decoder, stream, staging_dir, limits, upload)
    except BaseException as error:
        upload.discard()
        if isinstance(error, RequestEntityTooLarge | ClientDisconnected | UploadRefused):
            raise
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StagingFull(
                f"the staging area has no room for this upload ({error.strerror}); "
                "nothing of it was kept"
            ) from error
        if isinstance(error, BadRequest | ValueError):
            raise MalformedUpload(f"the multipart body is malformed ({error})") from error
        raise
    if upload.path is None:
        raise MalformedUpload(f"the upload has no file part named {FILE_PART!r}")
    return upload


def _read_parts(
    decoder: MultipartDecoder,
    stream: IO[bytes],
    staging_dir: Path,
    limits: Limits,
    upload: StagedUpload,
) -> None:
    events = body_events(decoder, stream, limits)
    parts = 0
    for event in events:
        if isinstance(event, Field | File):
            parts += 1
            _check_part(event, parts, limits)
        if isinstance(event, Field):
            value = bytearray()
            for data in part_data(events):
                value += data
                if len(value) > limits.field_bytes:
                    raise MalformedUpload(f"form field {event.name!r} is too long")
            if event.name in upload.fields:
                raise MalformedUpload(f"form field {event.name!r} is given more than once")
            try:
                upload.fields[event.name] = value.decode("utf-8")
            except UnicodeDecodeError as error:
                raise MalformedUpload(f"form field {event.name!r} is not UTF-8") from error
        elif isinstance(event, File):
            if event.name != FILE_PART or upload.path is not None:
                raise MalformedUpload(f"the upload must carry exactly one file part, {FILE_PART!r}")
            upload.filename = event.filename
            upload.content_type = event.headers.get("content-type", "")
            digest = hashlib.sha256()
            with staged_file(staging_dir, upload) as out:
                for data in part_data(events):
                    digest.update(data)
                    out.write(data)
                    upload.size += len(data)
            upload.sha256 = digest.hexdigest()
