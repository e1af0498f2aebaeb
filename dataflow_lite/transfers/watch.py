"""While a transfer (or a batch of them) runs: leases renewed, progress stored, cancels noticed.

One thread per running batch wakes every ``transfer_progress_seconds``. It stores the bytes the
adapter last reported (only when they changed: a copy reports every chunk, the catalog sees one
write per tick at most) and renews the leases when a third of one has passed, in one transaction
that also tells which of the run's claims still hold; between writes it reads the claims. A
transfer whose claim no longer holds (the transfer was cancelled, or a sweep gave it to
another worker after this one stalled past its lease) has its job's ``cancelled`` event set,
which adapters watch between chunks.
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
from dataflow_lite.store.models import Transfer, row_id, utcnow

log = logging.getLogger(__name__)


class Progress:
    """What an adapter reports while it works, and the signal that tells it to stop."""

    def __init__(self) -> None:
        self.moved: int | None = None
        self.cancelled = threading.Event()

    def report(self, moved: int) -> None:
        """Bytes at the destination so far (called by adapters, as often as they like)."""
        self.moved = moved


def claims_held(engine: Engine, batch: list[Transfer]) -> set[int]:
    """The transfers of ``batch`` whose run still owns them (a read: no write lock)."""
    with session_scope(engine, write=False) as session:
        rows = session.exec(
            select(Transfer.id, Transfer.claim, Transfer.state).where(
                col(Transfer.id).in_([transfer.id for transfer in batch])
            )
        ).all()
    claims = {transfer.id: transfer.claim for transfer in batch}
    return {
        row_id
        for row_id, claim, state in rows
        if row_id is not None and claim == claims[row_id] and state in (RUNNING, VERIFYING)
    }


@contextmanager
def watched(
    batch: list[Transfer],
    save: Callable[[dict[int, dict[str, Any]]], set[int]],
    engine: Engine,
    lease: timedelta,
    every: float,
) -> Iterator[list[Progress]]:
    """Watch the run of ``batch`` while the block runs; yields a Progress per transfer.

    ``save({transfer_id: values})`` writes each transfer's values (in one transaction) unless
    its claim is void, and returns the ids whose claims hold. A transfer of the batch that was
    cancelled (or taken over) has its own ``cancelled`` set; the others go on.
    """
    progress = {row_id(transfer): Progress() for transfer in batch}
    stop = threading.Event()
    renew_every = lease.total_seconds() / 3

    def watch() -> None:
        stored: dict[int, int | None] = {}
        renewed = time.monotonic()
        while not stop.wait(min(every, renew_every)):
            try:
                renew = time.monotonic() - renewed >= renew_every
                values: dict[int, dict[str, Any]] = {}
                for transfer_id, report in progress.items():
                    changed: dict[str, Any] = {}
                    if report.moved not in (None, stored.get(transfer_id)):
                        changed["bytes_moved"] = report.moved
                    if renew:
                        changed["lease_until"] = utcnow() + lease
                    if changed:
                        values[transfer_id] = changed
                held = save(values) if values else claims_held(engine, batch)
                for transfer_id in held & set(values):
                    stored[transfer_id] = values[transfer_id].get(
                        "bytes_moved", stored.get(transfer_id)
                    )
                if renew:
                    renewed = time.monotonic()
            except Exception:  # a busy database now must not end the watch for good
                log.exception("watching transfers %s", [transfer.id for transfer in batch])
                continue
            for transfer_id, report in progress.items():
                if transfer_id not in held:
                    report.cancelled.set()  # cancelled or taken over: the adapter stops it
            if not held:
                return

    names = ",".join(str(transfer.id) for transfer in batch[:3])
    watcher = threading.Thread(target=watch, name=f"transfer-{names}", daemon=True)
    watcher.start()
    try:
        yield list(progress.values())
    finally:
        stop.set()
        watcher.join()
