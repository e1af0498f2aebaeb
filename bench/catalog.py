"""Dataset creation on each catalog: SQLite on one host, PostgreSQL on one host and on two.

Each setup runs real `dataflow-lite serve` hosts (gunicorn, the default workers) on a fresh
catalog; a pool of client threads sends `POST /api/v1/datasets` for a while, then the same pool
sends a trivial authenticated GET (`/api/v1/user-settings`) to the same hosts: the peer, so the
ratio says what creating a dataset costs beyond a request, on whatever the machine is doing. Two
hosts share one PostgreSQL database and one keys folder; requests alternate between them.

    .venv/bin/python bench/catalog.py                  # 8 clients, 10 s per measure
    .venv/bin/python bench/catalog.py --clients 16 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests
from serving import cli, serving

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.postgres
from tests.postgres import cluster  # noqa: E402


def rate(urls: list[str], key: str, clients: int, seconds: float, send: Callable) -> float:
    """Requests per second that ``clients`` threads get answered, spread over ``urls``."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(number: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {key}"
            while time.monotonic() < stop:
                url = urls[(number + done[number]) % len(urls)]
                response = send(session, url, f"bench {number}-{done[number]}")
                response.raise_for_status()
                done[number] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - began)


def create(session: requests.Session, url: str, name: str) -> requests.Response:
    return session.post(f"{url}/api/v1/datasets", json={"name": name}, timeout=60)


def trivial(session: requests.Session, url: str, _name: str) -> requests.Response:
    return session.get(f"{url}/api/v1/user-settings", timeout=60)


@contextmanager
def hosts(folder: Path, database: str | None, count: int) -> Iterator[tuple[list[str], str]]:
    """``count`` hosts on one catalog (SQLite when ``database`` is None); their URLs, an API key."""
    keys = folder / "keys"
    with ExitStack() as stack:
        urls = []
        for number in range(count):
            instance = folder / f"host{number}"
            instance.mkdir()
            config = f"host_name = 'host{number}'\nkeys_dir = {json.dumps(str(keys))}\n"
            if database:
                config += f"database = {json.dumps(database)}\n"
            (instance / "config.toml").write_text(config)
            if number == 0:
                cli(instance, "init")
                cli(instance, "user", "add", "ada", "--name", "Ada")
                key = cli(instance, "key", "create", "ada").strip()
            urls.append(stack.enter_context(serving(instance)))
        yield urls, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    print(f"{args.clients} clients, {args.seconds:g} s per measure")
    print(f"{'catalog':<22} {'creates/s':>10} {'trivial GET/s':>14} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as scratch, cluster() as postgresql:
        for label, database, count in (
            ("SQLite, 1 host", None, 1),
            ("PostgreSQL, 1 host", postgresql.create_database(), 1),
            ("PostgreSQL, 2 hosts", postgresql.create_database(), 2),
        ):
            folder = Path(scratch) / label.replace(" ", "").replace(",", "-")
            folder.mkdir()
            with hosts(folder, database, count) as (urls, key):
                made = rate(urls, key, args.clients, args.seconds, create)
                peer = rate(urls, key, args.clients, args.seconds, trivial)
            print(f"{label:<22} {made:>10.1f} {peer:>14.1f} {made / peer:>6.2f}")


if __name__ == "__main__":
    main()
