"""Moving a file's bytes with Debian's rsync over the stock ssh client.

rsync writes into a hidden temporary file beside the target and renames it when complete; when it
is interrupted it keeps what arrived in ``.rsync-partial/`` beside the target, and the next run
resumes from there. ``--ignore-existing`` makes it refuse to replace a file at the target.

Passwords reach ssh through ``SSH_ASKPASS``: a two-line script (which holds no secret) prints an
environment variable that only rsync, ssh and the script inherit. The script lives in a private
temporary directory for the duration of the call; the password is never on a command line (where
``ps`` would show it) nor in a file.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataflow_lite.adapter import AdapterError

from .errors import Where, rsync_error
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


class RemoteMkpathUnsupported(Exception):
    """The host's rsync is older than 3.2.3 and has no ``--mkpath``."""


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


@functools.cache
def local_mkpath() -> bool:
    """Whether this machine's rsync has ``--mkpath`` (3.2.3 and later)."""
    version = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout
    words = version.split()
    numbers = words[2].split(".") if len(words) > 2 and words[1] == "version" else []
    try:
        return tuple(int(number) for number in numbers[:3]) >= (3, 2, 3)
    except ValueError:
        return False


def base_guard(base: str, no_links: tuple[str, ...] = ()) -> str:
    """rsync's ``--rsync-path``: the host's shell checks the base path, then runs rsync.

    ``--mkpath`` would create a missing base path (a storage mount that is not there) along with
    the target's folders; this stops it, in the same round trip. Each of ``no_links`` (the
    target's folders below the base, its partial folder and the target) must not be a symbolic
    link: rsync has no option that refuses links in the receiving side's path, and follows them.
    """
    guard = f"test -d {remote_argument(base)} || {{ echo '{BASE_MISSING}' >&2; exit 1; }}; "
    if no_links:
        paths = " ".join(remote_argument(path) for path in no_links)
        guard += (
            f'for p in {paths}; do if test -L "$p"; then '
            f'echo "{LINK_FOUND}$p" >&2; exit 1; fi; done; '
        )
    return guard + "rsync"


def push(
    staged: Path,
    host: str,
    port: int,
    remote_path: str,
    login: Login,
    where: Where,
    *,
    base: str,
    mkpath: bool = True,
    scratch: Path | None = None,
    no_links: tuple[str, ...] = (),
) -> bool:
    """Copy ``staged`` to ``remote_path``; whether bytes moved (False: something was there).

    Blocks until rsync exits. rsync and ssh run in their own session (``setsid``), which is what
    makes ssh use the askpass script rather than a terminal, and lets an interrupted call stop them
    as a group. Without ``mkpath`` the target's folders must exist.
    """
    ssh = " ".join(_quote(argument) for argument in ssh_command(port, login, where.known_hosts))
    command = [
        "rsync",
        f"--partial-dir={PARTIAL_DIR}",
        "--ignore-existing",
        "--itemize-changes",
        f"--timeout={IO_TIMEOUT}",
        *(["--mkpath"] if mkpath else []),
        f"--rsync-path={base_guard(base, no_links)}",
        "-e",
        ssh,
        "--",
        str(staged),
        destination(host, login.username, remote_path),
    ]
    with _environment(login, scratch) as environment:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            start_new_session=True,
            text=True,
        )
        try:
            stdout, stderr = process.communicate()
        finally:
            if process.poll() is None:  # interrupted (a worker shutting down): stop the group
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
    if process.returncode != 0:
        _raise_failure(process.returncode, stderr, staged, base, login, where)
    # An itemized line (<f+++++++++) per file sent; none when --ignore-existing skipped it.
    return any(line.startswith("<f") for line in stdout.splitlines())


def _raise_failure(
    code: int, stderr: str, staged: Path, base: str, login: Login, where: Where
) -> None:
    text = stderr.lower()
    if not staged.exists():  # rsync's own words would blame a missing file on the host
        raise AdapterError(f"the staged file {staged} is missing", permanent=True)
    if BASE_MISSING in stderr:
        raise AdapterError(
            f"the base path {base} does not exist on {where.host_port}", permanent=True
        )
    for line in stderr.splitlines():
        if line.startswith(LINK_FOUND):
            link = line.removeprefix(LINK_FOUND).strip()
            raise AdapterError(
                f"{link} on {where.host_port} is a symbolic link: links at the destination "
                "are never followed",
                permanent=True,
            )
    if "--mkpath" in text and "unknown option" in text:
        raise RemoteMkpathUnsupported(stderr.strip())
    if any(words in text for words in NO_REMOTE_RSYNC):
        reason = next(line for line in stderr.splitlines() if line.strip())
        raise RsyncUnavailable(reason.strip())
    raise rsync_error(code, stderr, where, login.username, login.password is not None)
