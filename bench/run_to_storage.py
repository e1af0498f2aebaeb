"""One instrument run from the instrument computer to verified storage, against rsync by hand.

Run as root from the repository root (it creates a throwaway account and starts sshd on a free
port of 127.0.0.1, as the tests do, and a throw-away dataflow-lite instance with that account
as its sftp endpoint)::

    .venv/bin/python bench/run_to_storage.py [--small 300] [--small-kib 64] \\
        [--large 2] [--large-mib 256]     # --large 0: the small files alone

For the small files (300 x 64 KiB) and then the large ones (2 x 256 MiB) it times, in the same
command, ``dataflow-agent push`` through the running server until the server has verified every
file at the destination, and one ``rsync -r`` of the same folder to the same sshd, as a person
would send it by hand. It prints both times, their ratio, the large files' rates, and the
agent's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.sshd

from serving import cli, rsync_by_hand, serving  # noqa: E402

from tests.sshd import running_sshd, ssh_account  # noqa: E402

AGENT = [sys.executable, "-m", "dataflow_lite_agent"]


def fill(folder: Path, count: int, size: int, name: str) -> int:
    folder.mkdir(parents=True)
    for number in range(count):
        with (folder / f"{name}{number:04}.bin").open("wb") as out:
            for _ in range(max(1, size >> 20)):
                out.write(os.urandom(min(size, 1 << 20)))
    return count * size


def push(url: str, key: str, folder: Path, state: Path) -> tuple[float, int, str]:
    """Seconds until every file is verified, the agent's peak RSS in KiB, and its summary."""
    rss = state.with_suffix(".rss")
    # GNU time reports the agent's own peak: a child's ru_maxrss from wait4 would include the
    # pages it shared with this process before exec (Linux keeps the higher of the two).
    command = ["/usr/bin/time", "-f", "%M", "-o", str(rss), *AGENT, "--state", str(state),
               "push", str(folder), "--server", url, "--key", key, "--quiet"]  # fmt: skip
    began = time.perf_counter()
    agent = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    took = time.perf_counter() - began
    assert agent.returncode == 0, agent.stdout
    return took, int(rss.read_text().split()[-1]), agent.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--large", type=int, default=2)
    parser.add_argument("--large-mib", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as scratch:
        work = Path(scratch)
        (work / "keys").mkdir()
        small = fill(work / "small", args.small, args.small_kib << 10, "frame")
        large = fill(work / "large", args.large, args.large_mib << 20, "volume")
        with ssh_account(work / "keys") as user, running_sshd(user, work / "sshd") as sshd:
            for folder in ("store", "by-hand-small", "by-hand-large"):
                (user.home / folder).mkdir()
                user.chown(user.home / folder)
            instance = work / "instance"
            cli(instance, "init")
            cli(instance, "endpoint", "add", "beamline-store", "--type", "sftp",
                "--host", "127.0.0.1", "--port", str(sshd.port), "--username", user.name,
                "--path", "store", "--key-file", str(user.key_file),
                "--known-hosts", str(sshd.known_hosts), "--default")  # fmt: skip
            cli(instance, "user", "add", "ada")
            key = cli(instance, "key", "create", "ada").strip()
            with serving(instance) as url:
                figures = {}
                for name, size, count in (("small", small, args.small),
                                          ("large", large, args.large)):  # fmt: skip
                    if not count:
                        continue  # --small 0 or --large 0: that half is not run
                    by_hand = rsync_by_hand(sshd, work / name, f"by-hand-{name}")
                    agent, rss, summary = push(url, key, work / name, work / f"state-{name}")
                    assert f"{count} of {count} verified" in summary, summary
                    figures[name] = (by_hand, agent, rss, size, count)
    print(json.dumps({"machine": os.uname().nodename, "cpus": os.cpu_count()}))
    print("| run | rsync -r by hand | dataflow-agent push, until verified | ratio | agent RSS |")
    print("| --- | --- | --- | --- | --- |")
    for name, (by_hand, agent, rss, size, count) in figures.items():
        label = f"{count} x {size // count >> 10} KiB" if name == "small" else (
            f"{count} x {size // count >> 20} MiB")  # fmt: skip
        rates = f" ({size / by_hand / 1e6:.0f} / {size / agent / 1e6:.0f} MB/s)"
        print(
            f"| {label} | {by_hand:.2f} s | {agent:.2f} s | **{agent / by_hand:.2f}x**"
            f"{rates if name == 'large' else ''} | {rss / 1024:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
