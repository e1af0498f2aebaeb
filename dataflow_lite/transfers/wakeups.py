"""Waking another host's workers: PostgreSQL's ``LISTEN``/``NOTIFY``.

Each host's workers take their messages from its own huey queue (a file in its instance folder),
and a file transfer runs only on the host that staged it. A message that reaches the wrong host
(a retry asked of host A for a transfer staged on host B) is passed on: A's claim, refused, sends
``NOTIFY`` in its transaction, and B's worker process, listening on one connection of its own,
puts the message in B's queue. A notification sent while B is not listening is lost, and that is
allowed for: B sweeps when it starts and every minute, and on each (re)connection.

Why not a PostgreSQL job library (procrastinate)? The transfer table is the queue's record of
truth, with claims and leases of its own; huey only carries wake-ups, and on SQLite it must go on
doing so. What crosses hosts is one kind of message, and ``NOTIFY`` carries it without a second
queue to keep in step with the first.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlmodel import Session

log = logging.getLogger(__name__)

CHANNEL = "dataflow_lite_wake"
RECONNECT_SECONDS = 5


def forward(session: Session, host: str, transfer_id: int) -> None:
    """Ask ``host``'s workers to run the transfer, once the session's transaction commits (on
    PostgreSQL; on SQLite, where every worker is on one host, there is no one else to ask)."""
    if session.get_bind().dialect.name == "postgresql":
        payload = json.dumps({"host": host, "transfer": transfer_id})
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
        )


def listen(
    engine: Engine, host: str, wake: Callable[[int], None], listening: Callable[[], object]
) -> threading.Event:
    """Start a thread that calls ``wake(transfer_id)`` for each transfer sent to ``host``, and
    ``listening()`` each time it has (re)connected, until the returned event is set. On SQLite
    there is nothing to listen to, and no thread."""
    stop = threading.Event()
    if engine.dialect.name != "postgresql":
        return stop

    def run() -> None:
        while not stop.is_set():
            try:
                _listen_once(engine, host, wake, listening, stop)
            except Exception:  # the server restarted, a network cut: connect again
                log.exception("listening for wake-ups")
                stop.wait(RECONNECT_SECONDS)

    threading.Thread(target=run, name="wake-ups", daemon=True).start()
    return stop


def _listen_once(
    engine: Engine,
    host: str,
    wake: Callable[[int], None],
    listening: Callable[[], object],
    stop: threading.Event,
) -> None:
    raw = engine.raw_connection()  # this thread's own: a listening connection is not shared
    try:
        connection = raw.driver_connection
        assert connection is not None
        connection.autocommit = True
        connection.execute(f"LISTEN {CHANNEL}")
        listening()
        while not stop.is_set():
            for notification in connection.notifies(timeout=1):
                try:
                    sent = json.loads(notification.payload)
                    if sent["host"] == host:
                        wake(int(sent["transfer"]))
                except (ValueError, KeyError, TypeError):
                    log.warning("a wake-up this host cannot read: %r", notification.payload)
    finally:
        raw.invalidate()
