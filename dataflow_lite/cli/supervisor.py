"""Running the web server and the transfer worker side by side, as one command.

The children must not outlive the supervisor, however it ends: stopped by a signal it stops
them itself, and killed outright (``kill -9``, the OOM killer) the kernel signals them, through
Linux's ``PR_SET_PDEATHSIG`` set in each child before it runs its command. Otherwise a gunicorn
left behind would keep the port, and a restart would fail.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class Child:
    """A command to run, and the signal it gets if the supervisor dies without stopping it."""

    command: list[str]
    #: gunicorn stops at once on SIGINT (SIGTERM waits for requests in flight), huey on SIGTERM.
    orphan_signal: signal.Signals = signal.SIGTERM


def _end_with_parent(signum: signal.Signals) -> Callable[[], None] | None:
    """A function for ``Popen(preexec_fn=...)`` that makes the child get ``signum`` when this
    process dies; None where the kernel offers no such thing (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child, between fork and exec: async-signal-safe only
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was made
            os.kill(os.getpid(), signum)

    return preexec


def supervise(children: list[Child]) -> int:
    """Start every child; when one exits or a signal arrives, stop the others.

    Return the exit status of the first child that ended (0 after SIGTERM or SIGINT).
    """
    processes = [
        subprocess.Popen(child.command, preexec_fn=_end_with_parent(child.orphan_signal))
        for child in children
    ]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping:
            ended = [process for process in processes if process.poll() is not None]
            if ended:
                status = ended[0].returncode
                break
            time.sleep(0.2)
        else:
            status = 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
