"""While a transfer runs: its lease renewed, its progress stored, its cancellation noticed.

One thread per running transfer wakes every ``transfer_progress_seconds``. It stores the bytes the
adapter last reported (only when they changed: a copy reports every chunk, the catalog sees one
write per tick at most) and renews the lease when a third of it has passed, both in one
conditional UPDATE that also tells whether the run's claim still holds; between writes it reads
the claim. A claim that no longer holds (the transfer was cancelled, or a sweep gave it to
another worker after this one stalled past its lease) sets the job's ``cancelled`` event, which
adapters watch between chunks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from dataflow_lite.adapter import RUNNING, VERIFYING
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.models import Transfer, utcnow

log = logging.getLogger(__name__)


class Progress:
    """What an adapter reports while it works, and the signal that tells it to stop."""

    def __init__(self) -> None:
        self.moved: int | None = None
        self.cancelled = threading.Event()

    def report(self, moved: int) -> None:
        """Bytes at the destination so far (called by adapters, as often as they like)."""
        self.moved = moved


def claim_holds(engine: Engine, transfer: Transfer) -> bool:
    """Whether the run that claimed ``transfer`` still owns it (a read: no write lock)."""
    with session_scope(engine, write=False) as session:
        row = session.exec(
            select(Transfer.claim, Transfer.state).where(col(Transfer.id) == transfer.id)
        ).first()
    return row is not None and row[0] == transfer.claim and row[1] in (RUNNING, VERIFYING)


@contextmanager
def watched(
    transfer: Transfer,
    save: Callable[..., bool],
    engine: Engine,
    lease: timedelta,
    every: float,
) -> Iterator[Progress]:
    """Watch the run of ``transfer`` while the block runs; yields the Progress adapters feed.

    ``save(**values)`` writes the run's values unless its claim is void (False then).
    """
    progress = Progress()
    stop = threading.Event()
    renew_every = lease.total_seconds() / 3

    def watch() -> None:
        stored, renewed = None, time.monotonic()
        while not stop.wait(min(every, renew_every)):
            try:
                moved = progress.moved
                values: dict[str, Any] = {}
                if moved is not None and moved != stored:
                    values["bytes_moved"] = moved
                if time.monotonic() - renewed >= renew_every:
                    values["lease_until"] = utcnow() + lease
                holding = save(**values) if values else claim_holds(engine, transfer)
                if values and holding:
                    stored = moved
                    if "lease_until" in values:
                        renewed = time.monotonic()
            except Exception:  # a busy database now must not end the watch for good
                log.exception("watching transfer %s", transfer.id)
                continue
            if not holding:
                progress.cancelled.set()  # cancelled or taken over: the adapter stops
                return

    watcher = threading.Thread(target=watch, name=f"transfer-{transfer.id}", daemon=True)
    watcher.start()
    try:
        yield progress
    finally:
        stop.set()
        watcher.join()
