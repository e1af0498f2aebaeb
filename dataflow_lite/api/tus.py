"""Resumable uploads on the tus 1.0 protocol, at ``/api/v1/uploads/``, behind the same API keys.

Extensions: creation, creation-with-upload, expiration, termination, checksum (sha1, sha256).
Not concatenation (see the README). ``Upload-Metadata`` names the target: ``dataset_id``,
``filename`` and, optionally, ``relative_path`` (and ``filetype``); they are checked when the
upload is created, before any byte is sent. The services keep the upload's state in the
catalog; this module writes its bytes to the staging area with the multipart route's writer
(``uploads.DirectWriter``), holding an exclusive ``flock`` on them while a request writes, so
that two requests never write one upload and a sweep never takes bytes still arriving. Under
gunicorn the body goes from the socket straight into the writer's aligned buffer
(``request_body``).

sha256 is computed on the way. The hash of the bytes so far is kept in the process between
requests; a request that finds none for its offset (another web worker took the previous one,
or the server restarted) does not hash, and the request that completes the upload then reads
the staged file once to hash it: at most one extra read per upload, however often it resumed.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from flask import Response, request, url_for
from flask.views import MethodView
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import http_date

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_identity
from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.request_body import body_reader
from dataflow_lite.api.uploads import CHUNK, DirectWriter, set_direct
from dataflow_lite.faces import runtime
from dataflow_lite.services import resumable_uploads
from dataflow_lite.services.dataset_files import UnfinishedUpload
from dataflow_lite.services.errors import NotFound
from dataflow_lite.services.resumable_uploads import UploadState

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,expiration,termination,checksum"
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
OFFSET_STREAM = "application/offset+octet-stream"
#: A long request makes its progress durable (and so resumable) at least this often.
CHECKPOINT_BYTES = 64 << 20

blp = Blueprint("uploads", __name__, description="Resumable uploads (tus 1.0).")


class ChecksumMismatch(DataflowError):
    """The chunk's bytes do not match its ``Upload-Checksum``: tus's own status, 460."""

    def __init__(self, message: str) -> None:
        super().__init__(460, message)

    @property
    def name(self) -> str:
        return "Checksum Mismatch"


@blp.before_request
def _check_version() -> None:
    if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != TUS_VERSION:
        error = DataflowError(412, f"this server speaks tus {TUS_VERSION}: send Tus-Resumable")
        error.data["headers"] = {"Tus-Version": TUS_VERSION}
        raise error


@blp.after_request
def _tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    return response


class _Hashes:
    """The sha256 of each upload's bytes so far, by upload, while this process has it."""

    MOST = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_upload: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> Any:
        """The hash of the first ``offset`` bytes (a new one at 0), or None if not known here."""
        with self._lock:
            found = self._by_upload.pop(upload_id, None)
        if offset == 0:
            return hashlib.sha256()
        return found[1] if found is not None and found[0] == offset else None

    def keep(self, upload_id: str, offset: int, digest: Any) -> None:
        with self._lock:
            self._by_upload[upload_id] = (offset, digest)
            while len(self._by_upload) > self.MOST:
                self._by_upload.popitem(last=False)


_hashes = _Hashes()


def _header_int(name: str) -> int:
    value = request.headers.get(name, "")
    if not value.isdigit():
        raise DataflowError(400, f"{name} must be a number of bytes, not {value!r}")
    return int(value)


def _metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata`` (``key base64,key base64``) as text, or 400."""
    found = {}
    for pair in filter(None, (item.strip() for item in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            found[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise DataflowError(
                400, f"Upload-Metadata {key!r} is not base64 of UTF-8 text"
            ) from None
    return found


def _dataset_id(metadata: dict[str, str]) -> int:
    value = metadata.get("dataset_id", "").strip()
    if not value.isdigit():
        raise DataflowError(
            400,
            "Upload-Metadata must carry dataset_id, a dataset's number",
            {"dataset_id": ["Not a valid integer."]},
        )
    return int(value)


def _checksum() -> tuple[Any, bytes] | None:
    """The hash to check the request's body with, and the digest it must have."""
    header = request.headers.get("Upload-Checksum")
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise DataflowError(400, f"Upload-Checksum: {algorithm!r} is not one of sha1, sha256")
    try:
        return CHECKSUMS[algorithm](), base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise DataflowError(400, "Upload-Checksum's digest is not base64") from None


def _state_headers(state: UploadState) -> dict[str, str]:
    headers = {"Upload-Offset": str(state.offset), "Upload-Length": str(state.length)}
    if not state.complete:
        headers["Upload-Expires"] = http_date(state.expires_at)
    return headers


def _open_locked(state: UploadState) -> int:
    """The upload's staged bytes, locked for this request; 409 if another request has them.

    Made only by the first request: later ones must find them (410 if they were lost, say the
    staging area was emptied), so that a request racing the one that completed the upload never
    leaves an empty file behind.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if state.offset == 0 else 0)
    try:
        fd = os.open(state.staged_path, flags, 0o644)
    except FileNotFoundError:
        rt, identity = runtime(), current_identity()
        resumable_uploads.writable_upload(rt, identity, state.id)  # 409 if completed meanwhile
        resumable_uploads.cancel_upload(rt, identity, state.id)
        raise DataflowError(410, "this upload's bytes were lost: start it again") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataflowError(409, "another request is sending bytes to this upload") from None
    return fd


def _rehash(fd: int, length: int) -> str:
    """The sha256 of the staged bytes, read once (when the hash so far was in another process)."""
    set_direct(fd, False)  # the writer may have left O_DIRECT on: it refuses unaligned reads
    digest = hashlib.sha256()
    position = 0
    while chunk := os.pread(fd, CHUNK, position):
        digest.update(chunk)
        position += len(chunk)
        time.sleep(0)  # a gevent worker's other connections go on meanwhile
    if position != length:
        raise DataflowError(409, "the staged bytes of this upload are not all there")
    return digest.hexdigest()


def _receive(
    state: UploadState, claimed: int, readinto: Callable[[memoryview], int], declared: int | None
) -> dict[str, Any] | None:
    """Append the request's body to the upload; finish it once all bytes are there.

    Return the catalogued file when this request completed the upload. What arrived before a
    cut connection stays (unless a checksum was asked for: it cannot be checked then).
    """
    rt = runtime()
    remaining = state.length - state.offset
    if declared is not None and declared > remaining:
        raise DataflowError(413, f"the body is longer than the {remaining} bytes the upload lacks")
    checksum = _checksum()
    fd = _open_locked(state)
    writer = None
    try:
        # Read again under the lock: a request that held it may have moved the offset.
        try:
            state = resumable_uploads.writable_upload(rt, current_identity(), state.id)
        except NotFound:
            state.staged_path.unlink(missing_ok=True)  # ended meanwhile: these bytes are no one's
            raise
        if claimed != state.offset:
            raise DataflowError(409, f"Upload-Offset must be {state.offset}, where the upload is")
        if os.fstat(fd).st_size < state.offset:
            resumable_uploads.cancel_upload(rt, current_identity(), state.id)
            raise DataflowError(410, "this upload's bytes were lost: start it again")
        os.ftruncate(fd, state.offset)  # bytes past the durable offset: a killed request's
        os.lseek(fd, state.offset, os.SEEK_SET)
        running = _hashes.take(state.id, state.offset)
        writer = DirectWriter(fd)
        durable = written = 0
        expected = remaining if declared is None else declared
        digests = [digest for digest in (running, checksum and checksum[0]) if digest]

        def seen(data: memoryview) -> None:
            for digest in digests:
                digest.update(data)

        try:
            while written < expected:
                got = writer.receive(readinto, expected - written, seen)
                if not got:
                    break  # the body ended (or the connection was cut)
                written += got
                if checksum is None and written - durable >= CHECKPOINT_BYTES and writer.sync():
                    _record(state, durable, written)
                    durable = written
        except ClientDisconnected:
            pass  # what arrived is kept below, like a body that ended early
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            writer.release()
            os.ftruncate(fd, state.offset + durable)
            raise DataflowError(
                507, f"the staging area has no room for this upload ({error.strerror})"
            ) from error
        writer.close()
        if checksum is not None and checksum[0].digest() != checksum[1]:
            os.ftruncate(fd, state.offset)
            os.fsync(fd)
            raise ChecksumMismatch(
                f"the body's {checksum[0].name} does not match Upload-Checksum: "
                f"its {written} bytes were discarded, the upload stays at {state.offset}"
            )
        if written > durable:
            _record(state, durable, written)
        offset = state.offset + written
        if running is not None:
            _hashes.keep(state.id, offset, running)
        if offset < state.length:
            return None
        sha256 = running.hexdigest() if running is not None else _rehash(fd, state.length)
        return resumable_uploads.finish_upload(rt, current_identity(), state.id, sha256)
    finally:
        if writer is not None:
            writer.release()
        os.close(fd)  # the lock goes with it: the catalog owns the bytes, or they await a resume


def _record(state: UploadState, durable: int, written: int) -> None:
    if not resumable_uploads.record_offset(
        runtime(), state.id, state.offset + durable, state.offset + written
    ):
        raise DataflowError(404, f"upload {state.id} was ended meanwhile")


def _body_follows() -> bool:
    return request.content_length not in (None, 0) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )


@blp.route("/uploads/", strict_slashes=False)
class Uploads(MethodView):
    def options(self) -> Response:
        """What this tus server offers: version, extensions, largest upload, checksums."""
        return Response(
            status=204,
            headers={
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": EXTENSIONS,
                "Tus-Max-Size": str(runtime().settings["max_upload_bytes"]),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
            },
        )

    def post(self) -> Response:
        """Create an upload (``Upload-Length``, ``Upload-Metadata``), optionally with its first
        bytes. Dataset, path and name are checked now: 404, 400 or 409 as for
        ``dataset-file-upload``; 413 over ``max_upload_bytes``."""
        if "Upload-Defer-Length" in request.headers or "Upload-Concat" in request.headers:
            raise DataflowError(400, "this server needs Upload-Length and does not concatenate")
        length = _header_int("Upload-Length")
        header = request.headers.get("Upload-Metadata", "")
        metadata = _metadata(header)
        identity = current_identity()
        try:
            state = resumable_uploads.start_upload(
                runtime(),
                identity,
                _dataset_id(metadata),
                metadata.get("relative_path", ""),
                metadata.get("filename", ""),
                length,
                metadata.get("filetype", ""),
                header,
            )
        except UnfinishedUpload as error:
            if error.user_id != identity.uid or error.length != length:
                raise
            # The client's own upload of this very file, whose URL it lost (killed between
            # creating it and keeping its answer): it may resume there.
            refusal = DataflowError(409, f"{error.message}: yours, at this response's Location")
            refusal.data["headers"] = {
                "Location": url_for("uploads.Upload", upload_id=error.upload_id)
            }
            raise refusal from None
        location = url_for("uploads.Upload", upload_id=state.id)
        headers = {"Location": location}
        if _body_follows() or length == 0:
            if _body_follows() and request.mimetype != OFFSET_STREAM:
                raise DataflowError(415, f"an upload's bytes are sent as {OFFSET_STREAM}")
            try:
                _receive(state, 0, body_reader(), request.content_length)
            except DataflowError as error:
                error.data["headers"] = {**error.data.get("headers", {}), **headers}
                raise
            state = resumable_uploads.upload_state(runtime(), current_identity(), state.id)
        return Response(status=201, headers={**headers, **_state_headers(state)})


@blp.route("/uploads/<upload_id>")
class Upload(MethodView):
    def head(self, upload_id: str) -> Response:
        """Where the upload stands: ``Upload-Offset`` is where to resume."""
        state = resumable_uploads.upload_state(runtime(), current_identity(), upload_id)
        headers = _state_headers(state)
        if state.upload_metadata:
            headers["Upload-Metadata"] = state.upload_metadata
        return Response(status=200, headers=headers)

    def patch(self, upload_id: str) -> Response:
        """Append bytes at ``Upload-Offset``; the last ones catalogue the file and queue its
        transfer. 409 if the offset is not the upload's, 460 if ``Upload-Checksum`` fails."""
        if request.mimetype != OFFSET_STREAM:
            raise DataflowError(415, f"an upload's bytes are sent as {OFFSET_STREAM}")
        claimed = _header_int("Upload-Offset")
        state = resumable_uploads.writable_upload(runtime(), current_identity(), upload_id)
        _receive(state, claimed, body_reader(), request.content_length)
        state = resumable_uploads.upload_state(runtime(), current_identity(), upload_id)
        headers = _state_headers(state)
        del headers["Upload-Length"]
        return Response(status=204, headers=headers)

    def delete(self, upload_id: str) -> Response:
        """End an unfinished upload and remove its bytes."""
        staged = resumable_uploads.cancel_upload(runtime(), current_identity(), upload_id)
        # A request still writing keeps its (now nameless) bytes until it ends, then finds the
        # upload gone; the catalog no longer names them, so nothing resumes them.
        staged.unlink(missing_ok=True)
        return Response(status=204)
