"""Many small files through the transfer queue and the sftp adapter, against one ``rsync -r``.

Run as root from the repository root (it creates a throwaway account and starts sshd on a free
port of 127.0.0.1, as the tests do, and a throwaway instance with that account as its sftp
endpoint)::

    .venv/bin/python bench/batch.py [--files 300] [--kib 64] [--rounds 3]

Each round stages the files as uploads would (no HTTP), queues one transfer each, and times four
threads (``transfer_workers``' default) running the queue's messages until every transfer is
verified at the destination; then one ``rsync -r`` of the same folder to the same sshd, as a
person would send it by hand. It prints the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.sshd

from serving import rsync_by_hand  # noqa: E402

from dataflow_lite import bootstrap  # noqa: E402
from dataflow_lite.store.db import session_scope  # noqa: E402
from dataflow_lite.store.models import Dataset, DatasetFile, Endpoint, Transfer, User  # noqa: E402
from tests.sshd import Sshd, running_sshd, ssh_account  # noqa: E402


def through_the_queue(
    instance: Path, server: Sshd, sources: list[Path], round_number: int
) -> float:
    """Stage ``sources``, queue a transfer each, and time the queue until all are done."""
    rt = bootstrap.build(instance)
    staging = rt.adapters.context.staging_dir
    with session_scope(rt.engine) as session:
        endpoint = session.get(Endpoint, "store")
        user = session.get(User, 1)
        assert endpoint is not None and user is not None
        dataset = Dataset(
            name=f"run {round_number}",
            creator_id=user.id or 0,
            endpoint_id="store",
            folder=f"bench/round/{round_number}",
        )
        session.add(dataset)
        session.flush()
        ids = []
        for source in sources:
            staged = staging / f"upload-{round_number}-{source.name}.part"
            shutil.copyfile(source, staged)
            file = DatasetFile(
                dataset_id=dataset.id or 0,
                name=source.name,
                file_length=source.stat().st_size,
                sha256=hashlib.sha256(source.read_bytes()).hexdigest(),
            )
            session.add(file)
            session.flush()
            ids.append(rt.queue.add(session, dataset, endpoint, file, staged).id or 0)
    began = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:  # four worker threads taking the messages in turn
        list(pool.map(rt.queue.run, ids))
    took = time.perf_counter() - began
    with session_scope(rt.engine, write=False) as session:
        states = [session.get(Transfer, transfer_id) for transfer_id in ids]
    errors = {t.last_error for t in states if t is not None and t.state != "done"}
    assert not errors, errors
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--kib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        work = Path(scratch)
        (work / "keys").mkdir()
        folder = work / "run"
        folder.mkdir()
        sources = []
        for number in range(args.files):
            sources.append(folder / f"frame{number:04}.bin")
            sources[-1].write_bytes(os.urandom(args.kib << 10))
        with ssh_account(work / "keys") as user, running_sshd(user, work / "sshd") as server:
            for name in ("store", *(f"by-hand-{n}" for n in range(args.rounds))):
                (user.home / name).mkdir()
                user.chown(user.home / name)
            instance = work / "instance"
            rt = bootstrap.build(instance)
            with session_scope(rt.engine) as session:
                session.add(User(username="ada", name="Ada"))
                options = {
                    "host": "127.0.0.1",
                    "port": server.port,
                    "username": user.name,
                    "path": "store",
                    "key_file": str(user.key_file),
                    "known_hosts": str(server.known_hosts),
                }
                session.add(Endpoint(id="store", name="store", adapter="sftp", options=options))
            queue, by_hand = [], []
            for round_number in range(args.rounds):
                queue.append(through_the_queue(instance, server, sources, round_number))
                by_hand.append(rsync_by_hand(server, folder, f"by-hand-{round_number}"))
    q, r = statistics.median(queue), statistics.median(by_hand)
    print(f"{args.files} x {args.kib} KiB to sshd on 127.0.0.1, {args.rounds} rounds (median):")
    print(f"  queue + sftp adapter, until verified: {q:.2f} s")
    print(f"  rsync -r by hand:                     {r:.2f} s")
    print(f"  ratio: {q / r:.1f}x")


if __name__ == "__main__":
    main()
