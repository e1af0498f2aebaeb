"""Fixtures: a real OpenSSH sshd on 127.0.0.1, a test user on it, and SFTP adapters pointed at it.

The sshd runs as root (it must switch to the test user) from ``/usr/sbin/sshd -D -e`` in its own
process group, on a free port, with its own host key, and accepts the test user with a password
(``chpasswd``) or a client key (``authorized_keys``). A second flavour forces ``internal-sftp``
for every session, as SFTP-only storage hosts do, so that there is no exec channel; a third puts
a stand-in for an rsync older than ``--mkpath`` first on the sessions' PATH. The tests run
as root on the same machine, so they read the files that land in the user's home directly.
A test module uses them by importing them (``from .sshd import sshd, ...``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
from dataflow_lite_sftp import SftpAdapter

from dataflow_lite.adapter import AdapterContext, TransferJob

SSHD = Path("/usr/sbin/sshd")
INSTALL = "apt-get install openssh-server rsync"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require_ssh_tools() -> None:
    """Skip the calling test when the real components are not installed."""
    if not SSHD.exists():
        pytest.skip(f"sshd not installed: {INSTALL}")
    for tool in ("rsync", "ssh", "ssh-keygen", "useradd", "chpasswd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed: {INSTALL}")
    if os.geteuid() != 0:
        pytest.skip("the sshd tests create a user and start sshd: they must run as root")


def keygen(path: Path) -> str:
    """Write a new ed25519 key pair at ``path`` (and ``.pub``); return the public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dataflow-lite-test", "-f", path],
        check=True,
    )
    algorithm, blob, *_ = path.with_suffix(".pub").read_text().split()
    return f"{algorithm} {blob}"


@pytest.fixture
def make_key() -> Callable[[Path], str]:
    """``make_key(path)``: a new ed25519 key pair at ``path``; returns the public line."""
    return keygen


@dataclass
class SshUser:
    """The session's test account, its password and client key, and the host key sshd uses."""

    name: str
    password: str
    home: Path
    key_file: Path
    host_key: Path
    host_public: str

    def chown(self, path: Path) -> None:
        """Give ``path`` to the test user."""
        entry = pwd.getpwnam(self.name)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def ssh_account(keys: Path) -> Iterator[SshUser]:
    """A fresh account (``useradd -m``) with a password and an authorized client key.

    Its keys and sshd's host key are written in ``keys``; the account and its home are removed
    on the way out.
    """
    name = f"dfltest{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        user = SshUser(
            name=name,
            password=password,
            home=Path(pwd.getpwnam(name).pw_dir),
            key_file=keys / "client_ed25519",
            host_key=keys / "host_ed25519",
            host_public=keygen(keys / "host_ed25519"),
        )
        client_public = keygen(user.key_file)
        ssh_dir = user.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(client_public + "\n")
        authorized.chmod(0o600)
        for path in (ssh_dir, authorized):
            user.chown(path)
        yield user
    finally:
        subprocess.run(["userdel", "-r", "-f", name], check=False, capture_output=True)


@pytest.fixture(scope="session")
def ssh_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshUser]:
    """The session's test account on this machine (skips when sshd or rsync is missing)."""
    require_ssh_tools()
    with ssh_account(tmp_path_factory.mktemp("ssh-keys")) as user:
        yield user


def _children(pid: int) -> list[int]:
    """Every process descended from ``pid`` (per-connection sshd processes leave its group)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent:
                found.append(child)
                frontier.append(child)
    return found


def _command_name(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


@dataclass
class Sshd:
    """One real sshd for the test user on 127.0.0.1:``port``."""

    user: SshUser
    directory: Path
    port: int
    sftp_only: bool = False
    #: More sshd_config lines, before any Match block.
    extra_config: tuple[str, ...] = ()
    #: A file that stand-in tools on the host append to, when there are any.
    host_log: Path | None = None
    process: subprocess.Popen | None = None
    known_hosts: Path = field(init=False)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.known_hosts = self.directory / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.user.host_public}\n")
        self.log = self.directory / "sshd.log"

    def _write_config(self) -> Path:
        config = self.directory / "sshd_config"
        lines = [
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.user.host_key}",
            f"PidFile {self.directory / 'sshd.pid'}",
            "UsePAM no",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PermitRootLogin no",
            f"AllowUsers {self.user.name}",
            "UseDNS no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            *self.extra_config,
        ]
        if self.sftp_only:
            # As SFTP-only storage hosts do: every session is the SFTP server, no shell, no exec.
            lines += [f"Match User {self.user.name}", "    ForceCommand internal-sftp"]
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> None:
        """Start sshd and wait until it greets a client."""
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60  # many seconds on a busy machine
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(64).startswith(b"SSH-"):
                        return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"sshd did not answer on port {self.port}: {self.log.read_text()}")

    def kill(self) -> None:
        """Kill sshd as a crash would: its process group and every per-connection sshd.

        The commands that sessions run (a remote rsync) are left to notice that their
        connection is gone, as they would when the daemon dies.
        """
        if self.process is None:
            return
        sessions = [pid for pid in _children(self.process.pid) if _command_name(pid) == "sshd"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Start sshd again on the same port, with the same keys."""
        self.kill()
        self.start()


@contextlib.contextmanager
def running_sshd(
    user: SshUser, directory: Path, *, sftp_only: bool = False, extra_config: tuple[str, ...] = ()
) -> Iterator[Sshd]:
    """An sshd for ``user`` on a free port, killed (with its sessions) on the way out."""
    server = Sshd(user, directory, free_port(), sftp_only=sftp_only, extra_config=extra_config)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def sshd(ssh_user: SshUser, tmp_path: Path) -> Iterator[Sshd]:
    """A real sshd (exec channel, rsync, SFTP) for the test user."""
    with running_sshd(ssh_user, tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def sftp_only_sshd(ssh_user: SshUser, tmp_path: Path) -> Iterator[Sshd]:
    """A real sshd that forces ``internal-sftp``: no shell, no exec channel, no rsync."""
    with running_sshd(ssh_user, tmp_path / "sshd-sftp", sftp_only=True) as server:
        yield server


# What rsync before 3.2.3 (RHEL 8 has 3.1.3) answers to the --mkpath of a newer client.
OLD_RSYNC = """#!/bin/sh
for argument in "$@"; do
    if [ "$argument" = --mkpath ]; then
        echo "refused --mkpath" >> "$(dirname "$0")/host.log"
        echo "rsync: --mkpath: unknown option" >&2
        echo "rsync error: syntax or usage error (code 1) at main.c(1592) [server=3.1.3]" >&2
        exit 1
    fi
done
exec /usr/bin/rsync "$@"
"""


@contextlib.contextmanager
def sshd_with_host_rsync(user: SshUser, directory: Path, script: str) -> Iterator[Sshd]:
    """A real sshd whose sessions find ``script`` first on their PATH as ``rsync``."""
    folder = user.home / f"host-rsync-{secrets.token_hex(3)}"
    folder.mkdir(mode=0o755)
    user.chown(folder)
    (folder / "rsync").write_text(script)
    (folder / "rsync").chmod(0o755)
    path = f"SetEnv PATH={folder}:/usr/local/bin:/usr/bin:/bin"
    try:
        with running_sshd(user, directory, extra_config=(path,)) as server:
            server.host_log = folder / "host.log"
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def old_rsync_sshd(ssh_user: SshUser, tmp_path: Path) -> Iterator[Sshd]:
    """A real sshd whose sessions find an rsync without ``--mkpath`` first on their PATH."""
    with sshd_with_host_rsync(ssh_user, tmp_path / "sshd-old", OLD_RSYNC) as server:
        yield server


# The host's rsync, whose words on stderr reach the client a second after its exit code (which
# travels in the transfer stream), as they may on a loaded host.
LAGGING_STDERR_RSYNC = """#!/bin/bash
exec 2> >(sleep 1; exec cat >&2)
exec /usr/bin/rsync "$@"
"""


@pytest.fixture
def lagging_stderr_sshd(ssh_user: SshUser, tmp_path: Path) -> Iterator[Sshd]:
    """A real sshd whose rsync's error messages lag behind its exit code."""
    with sshd_with_host_rsync(ssh_user, tmp_path / "sshd-lag", LAGGING_STDERR_RSYNC) as server:
        yield server


@dataclass
class RemoteBase:
    """The endpoint's base directory in the test user's home, as the adapter and root see it."""

    option: str
    path: Path

    def landed(self, target: str | PurePosixPath) -> Path:
        """Where ``target`` lands on the host's filesystem."""
        return self.path.joinpath(*PurePosixPath(target).parts)


@pytest.fixture
def remote_base(ssh_user: SshUser) -> Iterator[RemoteBase]:
    """A fresh base directory, owned by the test user; removed after the test."""
    name = f"base-{secrets.token_hex(4)}"
    path = ssh_user.home / name
    path.mkdir()
    ssh_user.chown(path)
    try:
        yield RemoteBase(name, path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_adapter(tmp_path: Path, ssh_user: SshUser, remote_base: RemoteBase) -> Callable:
    """``make_adapter(server, **options)``: an SftpAdapter for ``server``, key file by default."""

    def make(server: Sshd, **options: object) -> SftpAdapter:
        endpoint = {
            "host": "127.0.0.1",
            "port": server.port,
            "username": ssh_user.name,
            "path": remote_base.option,
            "key_file": str(ssh_user.key_file),
            "known_hosts": str(server.known_hosts),
        }
        endpoint.update(options)
        endpoint = {key: value for key, value in endpoint.items() if value is not None}
        context = AdapterContext(instance_path=tmp_path, staging_dir=tmp_path / "staging")
        return SftpAdapter(SftpAdapter.check_options(endpoint), context)

    return make


@pytest.fixture
def make_job(tmp_path: Path) -> Callable:
    """``make_job(target, content=None, size=..., credentials=None)``: a staged file as a job."""
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)

    def make(
        target: str,
        content: bytes | None = None,
        *,
        size: int = 4096,
        credentials: object = None,
    ) -> TransferJob:
        staged = staging / f"upload-{secrets.token_hex(6)}"
        digest = hashlib.sha256()
        with staged.open("wb") as out:
            if content is not None:
                out.write(content)
                digest.update(content)
            else:
                left = size
                while left:
                    chunk = os.urandom(min(left, 1 << 20))
                    out.write(chunk)
                    digest.update(chunk)
                    left -= len(chunk)
        return TransferJob(
            staged=staged,
            target=PurePosixPath(target),
            sha256=digest.hexdigest(),
            size=staged.stat().st_size,
            credentials=credentials,  # type: ignore[arg-type]
        )

    return make
