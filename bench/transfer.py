"""Measure SftpAdapter.submit against plain rsync over ssh, on the same file and the same sshd.

Run as root from the repository root (it creates a throwaway account and starts sshd on a free
port of 127.0.0.1, as the tests do)::

    .venv/bin/python bench/transfer.py [--size-mib 1024] [--rounds 3]

It prints the best and median MB/s (10^6 bytes per second) of each way over the rounds, and the
ratios of the medians. The file is read from the page cache and lands in the account's home on
this machine's disk, whose write-back makes single runs vary by tens of percent.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.sshd

from dataflow_lite_sftp import SftpAdapter  # noqa: E402

from dataflow_lite.adapter import AdapterContext, TransferJob  # noqa: E402
from tests.sshd import Sshd, running_sshd, ssh_account  # noqa: E402


def write_random(path: Path, size: int) -> str:
    """Fill ``path`` with ``size`` random bytes; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size >> 20):
            chunk = os.urandom(1 << 20)
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def plain_rsync(server: Sshd, staged: Path, folder: str, *ssh_options: str) -> None:
    """rsync -e ssh of ``staged`` into ``folder`` of the account's home, as a person would."""
    ssh = " ".join(
        [
            "ssh",
            f"-p {server.port}",
            f"-o UserKnownHostsFile={server.known_hosts}",
            "-o BatchMode=yes",
            f"-i {server.user.key_file}",
            *ssh_options,
        ]
    )
    destination = f"{server.user.name}@127.0.0.1:{folder}/"
    subprocess.run(["rsync", "-e", ssh, str(staged), destination], check=True)


def main() -> None:
    """Move the file both ways ``--rounds`` times and print the best rates and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    size = arguments.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as scratch:
        work = Path(scratch)
        (work / "keys").mkdir()
        with ssh_account(work / "keys") as user, running_sshd(user, work / "sshd") as server:
            staged = work / "payload.bin"
            sha256 = write_random(staged, size)
            for folder in ("adapter", "rsync", "rsync-gcm"):
                (user.home / folder).mkdir()
                user.chown(user.home / folder)
            context = AdapterContext(instance_path=work, staging_dir=work)
            options = {
                "host": "127.0.0.1",
                "port": server.port,
                "username": user.name,
                "path": "adapter",
                "key_file": str(user.key_file),
                "known_hosts": str(server.known_hosts),
            }
            adapter = SftpAdapter(SftpAdapter.check_options(options), context)
            job = TransferJob(staged, PurePosixPath("payload.bin"), sha256, size, None)
            ways = {
                "SftpAdapter.submit": lambda: adapter.submit(job),
                "rsync -e ssh": lambda: plain_rsync(server, staged, "rsync"),
                "rsync -e 'ssh -c aes128-gcm'": lambda: plain_rsync(
                    server, staged, "rsync-gcm", "-c aes128-gcm@openssh.com"
                ),
            }
            folders = dict(zip(ways, ("adapter", "rsync", "rsync-gcm"), strict=True))
            rates: dict[str, list[float]] = {name: [] for name in ways}
            names = list(ways)
            for round_number in range(arguments.rounds):
                # Each round starts with another way, so that none always runs on a quiet disk.
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    landed = user.home / folders[name] / "payload.bin"
                    landed.unlink(missing_ok=True)
                    os.sync()  # start each run with no dirty pages of the last one
                    began = time.perf_counter()
                    ways[name]()
                    rates[name].append(size / (time.perf_counter() - began) / 1e6)
                    assert landed.stat().st_size == size
            began = time.perf_counter()
            verified = adapter.verify(job, "rsync")
            verify_seconds = time.perf_counter() - began
            shutil.rmtree(work / "sshd", ignore_errors=True)
    print(f"{arguments.size_mib} MiB over ssh to 127.0.0.1, {arguments.rounds} rounds (MB/s):")
    print(f"  {'':32} {'best':>7} {'median':>7}")
    for name, measured in rates.items():
        print(f"  {name:32} {max(measured):7.0f} {statistics.median(measured):7.0f}")
    adapter, plain, tuned = (statistics.median(measured) for measured in rates.values())
    print(f"  median ratio to rsync -e ssh:          {adapter / plain:.2f}")
    print(f"  median ratio to rsync with aes128-gcm: {adapter / tuned:.2f}")
    print(f"  verify (sha256 on the host): {verified}, {verify_seconds:.1f} s")


if __name__ == "__main__":
    main()
