"""Running the web server and the transfer worker side by side, as one command."""

from __future__ import annotations

import signal
import subprocess
import time


def supervise(commands: list[list[str]]) -> int:
    """Start every command; when one exits or a signal arrives, stop the others.

    Return the exit status of the first command that ended (0 after SIGTERM or SIGINT).
    """
    processes = [subprocess.Popen(command) for command in commands]
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
