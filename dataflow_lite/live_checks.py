"""Live checks of endpoints (can the server write there now?), bounded in time and remembered.

A check reaches another host and may take as long as that host's timeouts (an SSH login that
never gets a banner waits 20 s). Pages and the API must not wait for it: each answer is kept
for ``live_check_max_age_seconds``; once older, the last known answer is given at once, with its
age, while a background thread asks again. Only a check never made before is waited for, by the
one caller who started it and at most ``live_check_timeout_seconds``; past that, and for every
caller meanwhile, the answer is a stand-in ("no answer yet") while the check goes on in the
background, so a host that never answers pins at most one request thread for that long.

The answers live in each server process (a gunicorn worker each), never in the catalog: they
are cheap to ask again and must never hold the catalog's write lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as Pending
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Checks running at once in one process; more wait their turn.
WORKERS = 4


@dataclass(frozen=True)
class Known(Generic[T]):
    """An answer and how old it is, in seconds (None: a stand-in, no answer yet)."""

    value: T
    age: float | None


class LiveChecks:
    """The answers of live checks by key, each refreshed in the background once it is old."""

    def __init__(self, max_age: float, timeout: float) -> None:
        self.max_age = max_age
        self.timeout = timeout
        self._answers: dict[Hashable, tuple[object, float]] = {}
        self._asking: dict[Hashable, Future[object]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="live-check")

    def ask(self, key: Hashable, check: Callable[[], T], pending: Callable[[], T]) -> Known[T]:
        """The answer of ``check`` for ``key``: as kept, fresh within the timeout, or pending()."""
        with self._lock:
            kept = self._answers.get(key)
            now = time.monotonic()
            if kept is not None and now - kept[1] < self.max_age:
                return Known(cast(T, kept[0]), now - kept[1])
            running = self._asking.get(key)
            asked_here = running is None
            if running is None:
                running = self._asking[key] = self._pool.submit(self._run, key, check)
        if kept is not None:  # old: answer what is known now, the check refreshes it meanwhile
            return Known(cast(T, kept[0]), time.monotonic() - kept[1])
        if not asked_here:  # someone already waits for this host: never a second thread
            return Known(pending(), None)
        try:
            return Known(cast(T, running.result(self.timeout)), 0.0)
        except Pending:
            return Known(pending(), None)

    def _run(self, key: Hashable, check: Callable[[], object]) -> object:
        try:
            value = check()
        except Exception:  # a check that broke is no answer: the next call asks again
            log.exception("live check %s", key)
            raise
        finally:
            with self._lock:
                self._asking.pop(key, None)
        with self._lock:
            self._answers[key] = (value, time.monotonic())
        return value
