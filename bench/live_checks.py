"""Another user's uploads while a host that never answers is being checked, against a quiet run.

Starts a throw-away instance (`dataflow-lite serve`, two workers) in a temporary directory with
an sftp endpoint on a 127.0.0.1 port that accepts connections and never says a word. User bob
uploads small files one after another, first with nobody else around, then while user ada's
scripts ask that endpoint's activation state from 16 threads at once::

    .venv/bin/python bench/live_checks.py [--files 60] [--checkers 16]

It prints the p50 and p95 latency of bob's uploads in both runs, their ratio, and the p95 of
ada's activation calls (bounded by `live_check_timeout_seconds`, 5 s by default).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from serving import cli, serving

from dataflow_lite import bootstrap
from dataflow_lite.adapter import Credentials
from dataflow_lite.services import users
from dataflow_lite.services.identity import system
from dataflow_lite.store import credentials
from dataflow_lite.store.db import unit_of_work


def silent_port(stop: threading.Event) -> int:
    """A listening port that accepts connections and never answers, until ``stop``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(0.2)
    held = []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
        listener.close()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def uploads(api: str, key: str, files: int) -> list[float]:
    """Seconds each of ``files`` 64 KiB uploads took, one after another, into a new dataset."""
    auth = {"Authorization": f"Bearer {key}"}
    dataset = requests.post(f"{api}/datasets", json={"name": "bench"}, headers=auth, timeout=60)
    dataset.raise_for_status()
    took = []
    for number in range(files):
        started = time.monotonic()
        sent = requests.post(
            f"{api}/dataset-file-upload",
            data={"dataset_id": dataset.json()["id"]},
            files={"file": (f"f{number}.bin", os.urandom(65536))},
            headers=auth,
            timeout=120,
        )
        sent.raise_for_status()
        took.append(time.monotonic() - started)
    return took


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--checkers", type=int, default=16)
    args = parser.parse_args()
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder) / "instance"
        cli(instance, "init")
        port = silent_port(stop)
        public = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
        )
        (instance / "known_hosts").write_text(f"[127.0.0.1]:{port} {public.decode()}\n")
        out = cli(instance, "endpoint", "add", "silent", "--type", "sftp", "--host", "127.0.0.1",
                  "--port", str(port), "--username", "lab", "--path", "/data")  # fmt: skip
        silent = out.split('"id": "')[1].split('"')[0]
        cli(instance, "user", "add", "ada")
        cli(instance, "user", "add", "bob")
        keys = {name: cli(instance, "key", "create", name).strip() for name in ("ada", "bob")}
        rt = bootstrap.build(instance)
        ada = next(user for user in users.list_users(rt, system()) if user.username == "ada")
        with unit_of_work(rt.engine, audited=False) as work:  # as an earlier activation left them
            credentials.store(work.session, rt.cipher, ada.id, silent, Credentials("lab", "pw"))
        rt.engine.dispose()
        with serving(instance) as url:
            api = f"{url}/api/v1"
            quiet = uploads(api, keys["bob"], args.files)
            checks: list[float] = []
            busy = threading.Event()

            def check() -> None:
                while not busy.is_set():
                    started = time.monotonic()
                    requests.get(
                        f"{api}/transports/globus/activation",
                        params={"endpoint": silent},
                        headers={"Authorization": f"Bearer {keys['ada']}"},
                        timeout=120,
                    )
                    checks.append(time.monotonic() - started)

            checkers = [threading.Thread(target=check) for _ in range(args.checkers)]
            for thread in checkers:
                thread.start()
            time.sleep(1)
            loaded = uploads(api, keys["bob"], args.files)
            busy.set()
            for thread in checkers:
                thread.join()
        stop.set()
    print(f"bob's uploads, {args.files} x 64 KiB, one after another:")
    print(f"  quiet:                 p50 {statistics.median(quiet) * 1000:7.1f} ms"
          f"   p95 {p95(quiet) * 1000:7.1f} ms")  # fmt: skip
    print(f"  silent host checked:   p50 {statistics.median(loaded) * 1000:7.1f} ms"
          f"   p95 {p95(loaded) * 1000:7.1f} ms")  # fmt: skip
    print(f"  p95 ratio:             {p95(loaded) / p95(quiet):.2f}x")
    print(f"ada's activation calls ({args.checkers} threads): {len(checks)} calls,"
          f" p95 {p95(checks) * 1000:.0f} ms, max {max(checks) * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
