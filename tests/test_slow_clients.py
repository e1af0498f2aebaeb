"""Clients that connect and send nothing, or trickle their headers, starve nobody.

Real sockets against ``dataflow-lite serve`` (gunicorn): while 200 connections sit idle and 64
more send one header line every second, ordinary requests are still answered. Before, each such
connection pinned one of gunicorn's 16 request threads and ordinary requests waited until the
attackers gave up.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

import pytest
import requests

from .conftest import LiveServer

pytestmark = pytest.mark.server

#: An answer within this long counts as answered; a starved server answers only when the
#: idle connections are closed (here: never, while the test holds them).
ANSWERED_WITHIN = 30.0  # generous: a busy machine answers late, a starved server never


@contextmanager
def idle_connections(server: LiveServer, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that send nothing."""
    address = urlsplit(server.url)
    with ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.create_connection((address.hostname, address.port)))
            for _ in range(count)
        ]
        yield sockets


@contextmanager
def trickling_connections(server: LiveServer, count: int) -> Iterator[None]:
    """``count`` connections that send a request's header lines one a second, never ending."""
    stop = threading.Event()
    with idle_connections(server, count) as sockets:
        for connection in sockets:
            connection.sendall(b"GET /api/v1/instruments HTTP/1.1\r\nHost: x\r\n")

        def trickle() -> None:
            line = 0
            while not stop.wait(1):
                line += 1
                for connection in sockets:
                    try:
                        connection.sendall(f"X-Slow-{line}: 1\r\n".encode())
                    except OSError:
                        pass

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def ordinary_requests_answered(server: LiveServer, key: str, count: int = 8) -> list[float]:
    """How long each of ``count`` ordinary API requests took (raises if one was not answered)."""
    took = []
    for _ in range(count):
        started = time.monotonic()
        answer = requests.get(
            server.api + "/instruments",
            headers={"Authorization": f"Bearer {key}"},
            timeout=ANSWERED_WITHIN,
        )
        assert answer.status_code == 200
        took.append(time.monotonic() - started)
    return took


def test_idle_and_trickling_connections_starve_no_ordinary_request(live_server, key):
    assert ordinary_requests_answered(live_server, key)  # warm
    with idle_connections(live_server, 200), trickling_connections(live_server, 64):
        time.sleep(1)  # every worker thread has had its chance to pick one up
        took = ordinary_requests_answered(live_server, key)
    assert max(took) < ANSWERED_WITHIN
