"""Reading a request's body into a caller's buffer (``readinto``), with as few copies as can be.

Under gunicorn, with a Content-Length, from the connection's socket itself (``recv_into``):
gunicorn's and Werkzeug's readers copy each byte four or five times over, which costs a
resumable upload more CPU than its sha256. Elsewhere, through ``request.stream``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any

from flask import request

from dataflow_lite.api.uploads import CHUNK


def body_reader() -> Callable[[memoryview], int]:
    """How to read the request's body into a buffer (``readinto``), at most to its length.

    Under gunicorn, with a Content-Length: from the connection's socket itself, after what
    gunicorn read ahead with the headers, keeping its count of the body's bytes left (so that
    the next request on the connection starts where it should). gunicorn's and Werkzeug's
    readers copy each byte four or five times over, more CPU than the sha256. Elsewhere (or if
    gunicorn's reader is not the one known here), through ``request.stream``.
    """
    body: Any = request.environ.get("wsgi.input")
    sock = request.environ.get("gunicorn.socket")
    # gunicorn's Body, its LengthReader and the SocketUnreader under it (gunicorn >= 27).
    reader: Any = getattr(body, "reader", None)
    unreader: Any = getattr(reader, "unreader", None)
    if (
        sock is None
        or type(reader).__name__ != "LengthReader"
        or not isinstance(getattr(reader, "length", None), int)
        or not isinstance(getattr(unreader, "buf", None), io.BytesIO)
        or not isinstance(getattr(body, "buf", None), io.BytesIO)
        or body.buf.tell()  # the app read some of the body already
    ):
        return stream_reader(request.stream)

    def readinto(view: memoryview) -> int:
        # gunicorn's own state stays true after every call: what it read ahead with the headers
        # is taken from its buffer, and its count of the body's bytes left goes down.
        ahead = unreader.buf.getvalue()
        if ahead:
            got = min(len(view), len(ahead))
            view[:got] = ahead[:got]
            unreader.buf = io.BytesIO()
            unreader.buf.write(ahead[got:])
        else:
            got = sock.recv_into(view, min(len(view), reader.length)) if reader.length else 0
        reader.length -= got
        return got

    return readinto


def stream_reader(stream: IO[bytes]) -> Callable[[memoryview], int]:
    """``readinto`` over a file-like ``stream`` (one copy per byte)."""

    def readinto(view: memoryview) -> int:
        data = stream.read(min(len(view), CHUNK))
        view[: len(data)] = data
        return len(data)

    return readinto
