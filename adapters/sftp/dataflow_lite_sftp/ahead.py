"""A login made ahead: the session a batch's sha256 pass needs, opened while its rsync runs.

``verify_batch`` reads the batch's hashes over a paramiko session of its own, and probes the
host's tools first. Made after rsync has ended, the login and the probe stood between the last
byte landing and the files being verified (about 0.15 s on loopback, a few round trips more on a
real network); made in a thread while rsync runs, they are ready when it ends. The session is
held for ``verify_batch`` to take, for at most ``HOLD_SECONDS`` (a batch whose files all failed
is never verified; a long rsync outlives it and its verification logs in afresh), then closed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from .host import TIMEOUT, Capabilities, HostSession, Login

log = logging.getLogger(__name__)

#: How long a session made ahead waits for its verification before it is closed unused.
HOLD_SECONDS = 60


class Ahead:
    """A session with the host (and its tools, probed) opened in the background for ``login``."""

    def __init__(
        self, login: Login, opener: Callable[[], AbstractContextManager[HostSession]]
    ) -> None:
        self.login = login
        self._ready = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._taken = False
        self._session: tuple[HostSession, Capabilities] | None = None
        self._thread = threading.Thread(
            target=self._hold, args=(opener,), name="sftp-login-ahead", daemon=True
        )
        self._thread.start()

    def _hold(self, opener: Callable[[], AbstractContextManager[HostSession]]) -> None:
        try:
            with opener() as session:
                self._session = (session, session.capabilities())
                self._ready.set()
                while not self._done.wait(HOLD_SECONDS):
                    with self._lock:
                        if not self._taken:
                            self._done.set()  # nobody came for it: closed, and never given out
        except Exception as error:  # the verification logs in itself and says what went wrong
            log.debug("a login made ahead failed: %s", error)
        finally:
            with self._lock:
                self._done.set()
            self._ready.set()

    def take(self) -> tuple[HostSession, Capabilities] | None:
        """The open session and the host's tools, or None if the login failed or was given up;
        held open until ``release``."""
        self._ready.wait(TIMEOUT)
        with self._lock:
            if self._done.is_set() or self._session is None:
                return None
            self._taken = True
            return self._session

    def release(self) -> None:
        """Close the session (taken or not) and wait until it is closed."""
        self._done.set()
        self._thread.join()
