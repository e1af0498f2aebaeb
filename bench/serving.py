"""What the benches share: the CLI on a throw-away instance, and `serve` on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests


def cli(instance: Path, *args: str) -> str:
    command = [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(instance: Path, *extra: str) -> Iterator[str]:
    """``dataflow-lite serve`` on a free port of 127.0.0.1 until the block ends; its URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), "serve",
         "--bind", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                requests.get(f"{url}/api/v1/openapi.json", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
