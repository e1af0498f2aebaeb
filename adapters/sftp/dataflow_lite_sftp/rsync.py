"""Moving a batch of files with one run of Debian's rsync over the stock ssh client.

The batch's staged files are hard-linked under their target paths into a hidden folder of the
staging area, which rsync sends ``--files-from`` a list of those paths (``--relative`` makes their
folders on the host): one ssh connection, one login, for any number of files. rsync writes each
file into a hidden temporary beside its target and renames it when complete; when it is
interrupted it keeps what arrived in ``.rsync-partial/`` beside the target, and the next run
resumes from there. ``--ignore-existing`` makes it refuse to replace a file at a target.

While it runs, rsync's ``--info=progress2`` lines on stdout (``  8,617,984  43%  8.01MB/s ...``,
about one a second) give the progress, spread over the files as their itemized lines say which
one is on its way, and a cancelled job stops rsync and ssh at once.

rsync's ssh ignores SIGUSR1. rsync 3.2.4 and later have the host's rsync write its errors to
stderr, which ssh carries apart from the transfer stream, while its exit code comes in that stream;
on reading it the client exits without a message of its own and sends its children SIGUSR1. An
ssh that died then would lose whatever of the host's words it had not yet written (one run in
three under load: "exit code 11, no message" instead of "Permission denied"); one that lives on
writes them all, and ends with the session.

Passwords reach ssh through ``SSH_ASKPASS``: a two-line script (which holds no secret) prints an
environment variable that only rsync, ssh and the script inherit. The script lives in a private
temporary directory for the duration of the call; the password is never on a command line (where
``ps`` would show it) nor in a file.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataflow_lite.adapter import Cancelled, TransferJob

from .errors import Where
from .host import TIMEOUT, Login, remote_argument

PARTIAL_DIR = ".rsync-partial"
# The fastest ciphers over loopback and LANs first (aes128-gcm: about 450 MiB/s, against 280 with
# OpenSSH's default); the rest keep older servers reachable.
CIPHERS = (
    "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,"
    "aes128-ctr,aes192-ctr,aes256-ctr"
)
SECRET_VARIABLE = "DFL_SFTP_ASKPASS_SECRET"
ASKPASS = f"#!/bin/sh\nprintf '%s\\n' \"${SECRET_VARIABLE}\"\n"
# rsync's own I/O timeout: a connection that moves nothing for this long is given up.
IO_TIMEOUT = 120
# The first number of an --info=progress2 line: bytes moved so far.
PROGRESS = re.compile(rb"^\s*([\d,]+)\s+\d+%")
# ssh under a shell that ignores SIGUSR1 (see above): "$0" is ssh, "$@" its arguments.
KEEP_SSH_TO_THE_END = ("sh", "-c", 'trap "" USR1; exec "$0" "$@"')
# How often a running rsync looks whether a job was cancelled.
CANCEL_POLL_SECONDS = 0.2
# Where an itemized line's file name starts (``<f+++++++++ name``).
ITEMIZED = 12
# A batch's source: a hidden folder of hard links beside the staged files.
LINK_TREE_PREFIX = ".rsync-batch-"
# The list of the batch's paths, in its link tree (a name no target can have: targets are
# below a dataset's folder, three components deep).
LISTING = ".files-from"


def rsync_available() -> bool:
    """Whether this machine has rsync and ssh."""
    return shutil.which("rsync") is not None and shutil.which("ssh") is not None


def _quote(argument: str) -> str:
    """Quote an argument of rsync's ``-e`` (rsync splits it itself, doubling quotes to escape)."""
    if argument and all(c.isalnum() or c in "-_.,/=@:+%" for c in argument):
        return argument
    return "'" + argument.replace("'", "''") + "'"


def ssh_command(port: int, login: Login, known_hosts: str) -> list[str]:
    """The ssh command rsync runs: strict host keys, one way to log in, no agent, no prompts."""
    command = [
        "ssh",
        "-p",
        str(port),
        "-c",
        CIPHERS,
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        "CheckHostIP=no",
        "-o",
        "IdentityAgent=none",
        "-o",
        f"ConnectTimeout={TIMEOUT}",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=4",
        "-o",
        "LogLevel=ERROR",
    ]
    if login.key_file is not None:
        command += ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(login.key_file)]
        command += ["-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no"]
    else:
        # BatchMode would stop ssh from asking the askpass script: one prompt, then give up.
        command += ["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"]
        command += ["-o", "PreferredAuthentications=password,keyboard-interactive"]
        command += ["-o", "NumberOfPasswordPrompts=1"]
    return command


@contextmanager
def _environment(login: Login, scratch: Path | None) -> Iterator[dict[str, str]]:
    """rsync's environment: English messages, no agent, and the askpass script for a password."""
    environment = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "DISPLAY")}
    environment["LC_ALL"] = "C"
    environment["RSYNC_OLD_ARGS"] = "1"  # the remote path is quoted by destination()
    if login.password is None:
        yield environment
        return
    directory = tempfile.mkdtemp(
        prefix=".askpass-", dir=scratch if scratch and scratch.is_dir() else None
    )
    try:
        script = Path(directory) / "askpass"
        script.write_text(ASKPASS)
        script.chmod(0o700)
        environment.update(
            SSH_ASKPASS=str(script),
            SSH_ASKPASS_REQUIRE="force",
            **{SECRET_VARIABLE: login.password},
        )
        yield environment
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def destination(host: str, username: str, path: str) -> str:
    """rsync's ``user@host:path`` (IPv6 addresses in brackets).

    The remote shell reads the path: it is quoted here, and rsync is told not to escape it again
    (``RSYNC_OLD_ARGS``), so a file named ``a;b`` or ``d*`` lands under exactly that name.
    """
    return f"{username}@{f'[{host}]' if ':' in host else host}:{shlex.quote(path)}"


class RsyncUnavailable(Exception):
    """The host cannot run rsync for this account: SFTP only, no rsync, or a noisy login shell."""


# What the host's shell says before rsync runs, when the base path is missing (see base_guard).
BASE_MISSING = "dataflow-lite: the base path is missing"
# What the host's shell says before rsync runs, when a link stands in the target's path.
LINK_FOUND = "dataflow-lite: a symbolic link stands at "
# rsync's and the shell's words when no rsync answers on the host.
NO_REMOTE_RSYNC = (
    "protocol version mismatch",  # an SFTP server (ForceCommand internal-sftp) or shell noise
    "sftp connections only",
    "rsync: not found",
    "rsync: command not found",
)


def base_guard(base: str, no_links: tuple[str, ...] = ()) -> str:
    """rsync's ``--rsync-path``: the host's shell checks the base path, then runs rsync.

    rsync would create a missing base path (a storage mount that is not there) as its
    destination; this stops it, in the same round trip. Each of ``no_links`` (the batch's
    folders below the base, their partial folders and the targets) must not be a symbolic
    link: rsync has no option that refuses links in the receiving side's path, and follows
    them. Every link found is named, one line each, and then nothing runs.
    """
    guard = f"test -d {remote_argument(base)} || {{ echo '{BASE_MISSING}' >&2; exit 1; }}; "
    if no_links:
        paths = " ".join(remote_argument(path) for path in no_links)
        guard += (
            f'l=0; for p in {paths}; do if test -L "$p"; then '
            f'echo "{LINK_FOUND}$p" >&2; l=1; fi; done; test $l = 0 || exit 1; '
        )
    return guard + "rsync"


class _Progress:
    """Spreads rsync's running total over the batch's files, in the order rsync sends them: a
    file's itemized line starts it, and the files before it are complete."""

    def __init__(self, jobs: list[TransferJob]) -> None:
        self.jobs = {str(job.target): job for job in jobs}
        self.current: TransferJob | None = None
        self.before = 0  # bytes of the files sent before the current one

    def itemized(self, name: str) -> None:
        if self.current is not None:
            self.current.progress(self.current.size)
            self.before += self.current.size
        self.current = self.jobs.get(name)

    def total(self, moved: int) -> None:
        if self.current is not None:
            self.current.progress(max(0, min(moved - self.before, self.current.size)))


def _read_progress(
    stream: Any, progress: _Progress, started: list[str], lines: list[bytes]
) -> None:
    """Read rsync's stdout to its end: report progress, note each file sent (its itemized
    ``<f`` line, which comes as it starts), keep the other lines."""
    pending = b""
    while chunk := stream.read1(65536):
        pending += chunk
        *done, pending = re.split(rb"[\r\n]", pending)
        for line in done:
            found = PROGRESS.match(line)
            if found:
                progress.total(int(found.group(1).replace(b",", b"")))
            elif line.startswith(b"<f"):
                started.append(line[ITEMIZED:].decode(errors="replace"))
                progress.itemized(started[-1])
            elif line.strip():
                lines.append(line)
    lines.append(pending)


def _run(
    command: list[str], environment: dict[str, str], jobs: list[TransferJob]
) -> tuple[int, list[str], str]:
    """Run rsync until it exits or a job is cancelled; its exit code, the files it started
    sending, and its stderr."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        start_new_session=True,
    )
    stdout, stderr = process.stdout, process.stderr
    assert stdout is not None and stderr is not None
    started: list[str] = []
    lines: list[bytes] = []
    errors: list[bytes] = []
    progress = _Progress(jobs)
    readers = [
        threading.Thread(
            target=_read_progress, args=(stdout, progress, started, lines), daemon=True
        ),
        threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        while True:
            try:
                process.wait(CANCEL_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if any(job.cancelled.is_set() for job in jobs):
                    raise Cancelled() from None
    finally:
        if process.poll() is None:  # cancelled, or interrupted (a worker shutting down)
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
        for reader in readers:
            reader.join()
        stdout.close()
        stderr.close()
    if process.returncode == 0:
        progress.itemized("")  # the last file is complete too
    return process.returncode, started, b"".join(errors).decode(errors="replace")


@contextmanager
def _link_tree(jobs: list[TransferJob]) -> Iterator[tuple[Path, Path]]:
    """A hidden folder beside the staged files holding a hard link to each at its target path
    (rsync's source), and the NUL-separated list of those paths (its ``--files-from``).

    Links, not copies: no byte is written twice. The folder is locked while it is used, so that
    the next batch removes the folders of a worker that died (which would keep staged files'
    bytes alive after their transfers were done).
    """
    staging = jobs[0].staged.parent
    for stale in staging.glob(f"{LINK_TREE_PREFIX}*"):
        with _locked(stale, blocking=False) as mine:
            if mine:
                shutil.rmtree(stale, ignore_errors=True)
    tree = Path(tempfile.mkdtemp(prefix=LINK_TREE_PREFIX, dir=staging))
    with _locked(tree, blocking=True):
        try:
            for job in jobs:
                link = tree.joinpath(*job.target.parts)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(job.staged, link)
            # In the tree, beside what it lists: rsync sends only what is listed.
            listing = tree / LISTING
            listing.write_bytes(b"".join(str(job.target).encode() + b"\0" for job in jobs))
            yield tree, listing
        finally:
            shutil.rmtree(tree, ignore_errors=True)


@contextmanager
def _locked(folder: Path, *, blocking: bool) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``folder`` while the block runs; whether it was taken."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@dataclass
class Pushed:
    """What one rsync of a batch did: its exit code, the files it started sending (paths
    relative to the base; a file is complete once the run ends with code 0), its stderr."""

    code: int
    started: list[str]
    stderr: str

    def links(self) -> list[str]:
        """The symbolic links the host's shell found in the batch's paths (then nothing ran)."""
        return [
            line.removeprefix(LINK_FOUND).strip()
            for line in self.stderr.splitlines()
            if line.startswith(LINK_FOUND)
        ]


def push(
    jobs: list[TransferJob],
    host: str,
    port: int,
    login: Login,
    where: Where,
    *,
    base: str,
    scratch: Path | None = None,
    no_links: tuple[str, ...] = (),
) -> Pushed:
    """Copy each job's staged file to its target below ``base`` with one rsync (one ssh
    connection): ``--files-from`` a tree of links, ``--relative`` making the folders.

    Blocks until rsync exits, reporting each job's progress; raises Cancelled soon after any
    job is cancelled. rsync and ssh run in their own session (``setsid``), which is what makes
    ssh use the askpass script rather than a terminal, and lets a cancelled or interrupted call
    stop them as a group.
    """
    ssh_argv = [*KEEP_SSH_TO_THE_END, *ssh_command(port, login, where.known_hosts)]
    ssh = " ".join(_quote(argument) for argument in ssh_argv)
    with _link_tree(jobs) as (tree, listing):
        command = [
            "rsync",
            f"--partial-dir={PARTIAL_DIR}",
            "--ignore-existing",
            "--itemize-changes",
            "--info=progress2",
            f"--timeout={IO_TIMEOUT}",
            "--from0",
            f"--files-from={listing}",
            f"--rsync-path={base_guard(base, no_links)}",
            "-e",
            ssh,
            "--",
            f"{tree}/",
            destination(host, login.username, base),
        ]
        with _environment(login, scratch) as environment:
            code, started, stderr = _run(command, environment, jobs)
    return Pushed(code, started, stderr)
