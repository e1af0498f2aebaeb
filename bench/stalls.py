"""What the hardening bounds cost: ordinary requests beside idle and trickling connections, and
the largest dataset body the API accepts, against a trivial one.

Starts a throw-away instance (`dataflow-lite serve`, two gevent workers) in a temporary
directory, then measures, one after another::

    .venv/bin/python bench/stalls.py [--requests 200] [--idle 200] [--trickling 64]

1. ``GET /api/v1/instruments`` one after another, first with nothing else connected, then while
   ``--idle`` connections send nothing and ``--trickling`` more send a header line a second:
   p50 and p95 of both runs and their ratio.
2. ``POST /api/v1/datasets`` with the largest body the default settings accept
   (``max_metadata_values`` values, as long as ``max_json_bytes`` allows), against a body with
   one value: the request's time, and how long the catalog's write lock was held, from SQLite's
   ``BEGIN IMMEDIATE`` to its ``COMMIT`` (the same service call, in this process, with the
   engine's events timing it). One more byte of body is checked to get 413.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import requests
from sqlalchemy import event

from dataflow_lite import bootstrap
from dataflow_lite.services import datasets, users
from dataflow_lite.services.identity import Identity, system

sys.path.insert(0, str(Path(__file__).parent))
from live_checks import cli, free_port  # noqa: E402


def latencies(url: str, key: str, count: int) -> list[float]:
    auth = {"Authorization": f"Bearer {key}"}
    took = []
    with requests.Session() as session:
        for _ in range(count):
            started = time.monotonic()
            session.get(url, headers=auth, timeout=60).raise_for_status()
            took.append(time.monotonic() - started)
    return took


def p(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100)[percent - 1] * 1000


def beside_slow_clients(port: int, key: str, count: int, idle: int, trickling: int) -> None:
    url = f"http://127.0.0.1:{port}/api/v1/instruments"
    latencies(url, key, count)  # warm both workers up
    quiet = latencies(url, key, count)
    stop = threading.Event()
    with ExitStack() as stack:
        held = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            for _ in range(idle + trickling)
        ]
        slow = held[idle:]
        for connection in slow:
            connection.sendall(b"GET /api/v1/instruments HTTP/1.1\r\nHost: x\r\n")

        def trickle() -> None:
            line = 0
            while not stop.wait(1):
                line += 1
                for connection in slow:
                    try:
                        connection.sendall(f"X-Slow-{line}: 1\r\n".encode())
                    except OSError:
                        pass

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(2)
        crowded = latencies(url, key, count)
        stop.set()
    print(f"GET /api/v1/instruments, {count} one after another")
    print("| connections besides | p50 | p95 |\n| --- | --- | --- |")
    print(f"| none | {p(quiet, 50):.1f} ms | {p(quiet, 95):.1f} ms |")
    print(
        f"| {idle} idle, {trickling} trickling | {p(crowded, 50):.1f} ms | "
        f"{p(crowded, 95):.1f} ms (**{p(crowded, 95) / p(quiet, 95):.2f}x**) |"
    )


def largest_values(settings: dict) -> list[dict]:
    """``max_metadata_values`` values, each as long as the JSON body limit allows."""
    count = settings["max_metadata_values"]
    size = min(settings["max_metadata_value_bytes"] - 2, settings["max_json_bytes"] // count)
    while True:
        values = [{"field_name": f"k{n:05}", "field_value": "x" * size} for n in range(count)]
        body = {"name": "largest", "metadata_field_values_attributes": values}
        if len(json.dumps(body)) <= settings["max_json_bytes"]:
            return values
        size -= 8


def lock_held(rt: bootstrap.Runtime, who: Identity, values: list[dict], runs: int) -> list[float]:
    """Seconds from BEGIN IMMEDIATE to COMMIT of each of ``runs`` dataset creations."""
    held: list[float] = []
    began: dict[int, float] = {}

    @event.listens_for(rt.engine, "begin")
    def begin(connection) -> None:
        began[id(connection)] = time.perf_counter()

    @event.listens_for(rt.engine, "commit")
    def commit(connection) -> None:
        held.append(time.perf_counter() - began.pop(id(connection)))

    pairs = [(value["field_name"], value["field_value"]) for value in values]
    for _ in range(runs):
        held.clear()
        datasets.create_dataset(rt, who, "bench", None, pairs)
        yield max(held)


def largest_body(instance: Path, port: int, key: str, runs: int) -> None:
    rt = bootstrap.build(instance)
    api = f"http://127.0.0.1:{port}/api/v1"
    auth = {"Authorization": f"Bearer {key}"}
    largest = largest_values(rt.settings)
    trivial = [{"field_name": "k", "field_value": "x"}]
    body = json.dumps({"name": "largest", "metadata_field_values_attributes": largest})
    over = body[:-2] + " " * (rt.settings["max_json_bytes"] - len(body) + 1) + body[-2:]
    refused = requests.post(
        f"{api}/datasets",
        data=over,
        headers={**auth, "Content-Type": "application/json"},
        timeout=60,
    )
    assert refused.status_code == 413, refused.text
    ada = next(user for user in users.list_users(rt, system()) if user.username == "ada")
    who = Identity(ada, "bench")
    print(f"\nPOST /api/v1/datasets, {runs} runs each, median")
    print("| body | bytes | request | write lock held |\n| --- | --- | --- | --- |")
    for name, values in (("one value", trivial), ("largest accepted", largest)):
        sent = json.dumps({"name": "bench", "metadata_field_values_attributes": values})
        took = []
        for _ in range(runs):
            started = time.monotonic()
            answer = requests.post(
                f"{api}/datasets",
                data=sent,
                headers={**auth, "Content-Type": "application/json"},
                timeout=120,
            )
            took.append(time.monotonic() - started)
            assert answer.status_code == 201, answer.text
        held = list(lock_held(rt, who, values, runs))
        print(
            f"| {name} ({len(values)} values) | {len(sent):,} | "
            f"{statistics.median(took) * 1000:.0f} ms | {statistics.median(held) * 1000:.1f} ms |"
        )
    print(f"(one byte more than max_json_bytes, {rt.settings['max_json_bytes']:,}: 413)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--trickling", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder) / "instance"
        cli(instance, "init")
        cli(instance, "user", "add", "ada")
        key = cli(instance, "key", "create", "ada").strip()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), "serve",
             "--bind", f"127.0.0.1:{port}", "--no-transfer-worker"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    requests.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=1)
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            beside_slow_clients(port, key, args.requests, args.idle, args.trickling)
            largest_body(instance, port, key, args.runs)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    main()
