"""What the benches share: the CLI on a throw-away instance, `serve` on a free port, and
rsync by hand, the peer of every transfer bench."""

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
from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from tests.sshd import Sshd


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


def rsync_by_hand(server: Sshd, folder: Path, into: str) -> float:
    """Seconds one ``rsync -r`` of ``folder`` into ``into`` at ``server`` takes, as a person
    would send it."""
    ssh = (
        f"ssh -p {server.port} -o UserKnownHostsFile={server.known_hosts} -o BatchMode=yes "
        f"-i {server.user.key_file}"
    )
    began = time.perf_counter()
    subprocess.run(
        ["rsync", "-r", "-e", ssh, f"{folder}/", f"{server.user.name}@127.0.0.1:{into}/"],
        check=True,
    )
    return time.perf_counter() - began
