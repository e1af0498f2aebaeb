"""The rsync/SFTP adapter: the destination is a directory on a host reached over SSH.

A submit is one rsync over the stock ssh client: the host's shell checks the base path, rsync
creates the target's folders (``--mkpath``), resumes from a hidden ``.rsync-partial/`` directory
and never replaces an existing file (``--ignore-existing``); only when something was already there
does a paramiko session compare its checksum. Hosts that run no rsync for the account (SFTP only)
get a paramiko upload to a hidden name and a rename. Checksums are computed on the host (python3,
``openssl`` or ``sha256sum`` over an exec channel) or, on SFTP-only hosts, by reading the file
back. Logins use the endpoint's ``key_file`` or, when the user activated the endpoint, their
username and password; host keys are always checked against a known_hosts file.
"""

from __future__ import annotations

import logging
import posixpath
import re
import secrets
import socket
import time
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import Any

from dataflow_lite.adapter import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    DONE,
    Activation,
    AdapterError,
    Check,
    Credentials,
    DestinationExists,
    Option,
    TransferAdapter,
    TransferJob,
    TransferStatus,
)

from .errors import Where, sftp_error
from .host import TIMEOUT, Capabilities, HostSession, Login, open_session, preflight
from .rsync import (
    PARTIAL_DIR,
    RemoteMkpathUnsupported,
    RsyncUnavailable,
    local_mkpath,
    push,
    rsync_available,
)
from .sftp import readback_sha256, staged_path, upload, write_atomically

log = logging.getLogger(__name__)

# How long a failed or cancelled rsync's host side may take to put its partial data away.
PARTIAL_WAIT_SECONDS = 30


class SftpAdapter(TransferAdapter):
    """Files land under a base directory of an SSH host (a storage server, a cluster's disk)."""

    name = "sftp"
    takes_credentials = True
    options = (
        Option("host", "the SSH host that receives the datasets"),
        Option("port", "its SSH port (22 on most hosts)", type=int),
        Option(
            "username",
            "the account that writes there with key_file (activation may name another)",
        ),
        Option(
            "path", "the base directory on the host, absolute or relative to the account's home"
        ),
        Option(
            "key_file",
            "a private key on this server that logs in as username, without passphrase "
            "(without it, users activate the endpoint with their password)",
            required=False,
        ),
        Option(
            "known_hosts",
            "a known_hosts file holding the host's key (default: known_hosts in the instance "
            "folder)",
            required=False,
        ),
    )

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_options(options)
        port = checked["port"]
        if not 0 < port < 65536:
            raise ValueError(f"--port must be between 1 and 65535, not {port}")
        path = str(checked["path"])
        if path.startswith("~"):
            raise ValueError("--path is absolute or relative to the home directory, without ~")
        checked["path"] = path.rstrip("/") or "/"
        for name in ("key_file", "known_hosts"):
            if name in checked:
                checked[name] = str(Path(checked[name]).expanduser().resolve())
        return checked

    @classmethod
    def overlaps(cls, options: dict[str, Any], other: dict[str, Any]) -> bool:
        """Whether both name one host and port and one base path is the other or holds it.

        Compared as written: the host's links and home directories cannot be resolved here.
        """
        if (options["host"].lower(), options["port"]) != (other["host"].lower(), other["port"]):
            return False
        mine, theirs = PurePosixPath(options["path"]), PurePosixPath(other["path"])
        if mine.is_absolute() != theirs.is_absolute():
            return False
        return mine == theirs or mine in theirs.parents or theirs in mine.parents

    @property
    def host(self) -> str:
        """The host's name or address."""
        return str(self.endpoint_options["host"])

    @property
    def port(self) -> int:
        """The host's SSH port."""
        return int(self.endpoint_options["port"])

    @property
    def base(self) -> str:
        """The endpoint's base directory on the host."""
        return str(self.endpoint_options["path"])

    @property
    def key_file(self) -> Path | None:
        """The private key that logs in as ``username``, if the endpoint has one."""
        key_file = self.endpoint_options.get("key_file")
        return Path(key_file) if key_file else None

    @property
    def known_hosts(self) -> Path:
        """The known_hosts file that the host's key is checked against."""
        known_hosts = self.endpoint_options.get("known_hosts")
        return Path(known_hosts) if known_hosts else self.context.instance_path / "known_hosts"

    @property
    def _where(self) -> Where:
        return Where(self.host, self.port, str(self.known_hosts))

    def _login(self, credentials: Credentials | None) -> Login:
        # A user who activated the endpoint writes as themself; otherwise the endpoint's key does.
        if credentials is not None:
            return Login(credentials.username, password=credentials.secret)
        if self.key_file is not None:
            return Login(str(self.endpoint_options["username"]), key_file=self.key_file)
        raise AdapterError(
            f"no credentials for {self._where.host_port}: activate the endpoint with the "
            "account's password, or give it a key_file",
            permanent=True,
        )

    def _session(self, login: Login) -> AbstractContextManager[HostSession]:
        return open_session(self.host, self.port, login, self._where)

    def _remote(self, target: PurePosixPath) -> str:
        return posixpath.join(self.base, *target.parts)

    def _sha256(self, session: HostSession, caps: Capabilities, path: str, size: int) -> str:
        if caps.exec and caps.hasher is not None:
            return session.sha256(path, caps.hasher, size)
        reason = "no exec channel (SFTP only)" if not caps.exec else "no hashing tool"
        log.warning(
            "%s has %s: checking %s by its size and by reading it back over SFTP",
            self._where.host_port,
            reason,
            path,
        )
        return readback_sha256(session, path)

    def _holds(self, session: HostSession, caps: Capabilities, job: TransferJob, path: str) -> bool:
        """Whether ``path`` holds exactly the job's bytes."""
        there = session.exists(path)
        if there is None or there.st_size != job.size:
            return False
        return self._sha256(session, caps, path, job.size) == job.sha256

    def activation(self, credentials: Credentials | None) -> Activation:
        try:
            login = self._login(credentials)
            with self._session(login):
                pass
        except AdapterError as error:
            return Activation(ACTIVATION_FAILED, str(error))
        return Activation(
            ALREADY_ACTIVATED, f"logged in to {self._where.host_port} as {login.username}"
        )

    def activate(self, username: str, password: str) -> Credentials | None:
        with self._session(Login(username, password=password)):
            pass  # a refused login raised a permanent AdapterError with the reason
        return Credentials(username, password)  # the core keeps it, encrypted

    def check(self, credentials: Credentials | None) -> list[Check]:
        where = self._where
        try:
            with socket.create_connection((self.host, self.port), timeout=TIMEOUT):
                pass
        except OSError as error:
            return [Check("reachable", False, f"{where.host_port}: {error.strerror or error}")]
        checks = [Check("reachable", True, f"{where.host_port} accepts connections")]
        try:
            login = self._login(credentials)
            with self._session(login) as session:
                how = "a password" if login.password is not None else f"key {login.key_file}"
                checks.append(Check("authenticated", True, f"as {login.username} with {how}"))
                checks.append(self._check_writable(session))
                free = session.free_bytes(self.base, session.capabilities())
                if free is not None:
                    checks.append(Check("free space", free > 0, f"{free / 2**30:.1f} GiB free"))
        except AdapterError as error:
            if len(checks) == 1:
                checks.append(Check("authenticated", False, str(error)))
            else:
                checks.append(Check("free space", False, str(error)))
        return checks

    def _check_writable(self, session: HostSession) -> Check:
        probe = posixpath.join(self.base, f".dataflow-lite-check-{secrets.token_hex(6)}")
        try:
            session.require_directory(self.base)
            with session.sftp.open(probe, "wb"):
                pass
            session.sftp.remove(probe)
        except AdapterError as error:
            return Check("writable", False, str(error))
        except OSError as error:
            return Check(
                "writable", False, str(sftp_error(f"cannot write {probe}", error, self._where))
            )
        return Check("writable", True, f"a test file was created and removed in {self.base}")

    def submit(self, job: TransferJob) -> str:
        staged_path(job)
        login = self._login(job.credentials)
        path = self._remote(job.target)
        if rsync_available():
            try:
                return self._submit_by_rsync(job, login, path)
            except RsyncUnavailable as reason:
                log.warning(
                    "%s runs no rsync for %s (%s): moving %s by SFTP",
                    self._where.host_port,
                    login.username,
                    reason,
                    job.target,
                )
        else:
            log.warning("rsync or ssh is not installed here: moving %s by SFTP", job.target)
        return self._submit_by_sftp(job, login, path)

    def _submit_by_rsync(self, job: TransferJob, login: Login, path: str) -> str:
        """One rsync does it all on the way: base path check, folders, resume, no overwrite."""
        preflight(login, self._where)
        mkpath = local_mkpath()
        if not mkpath:
            self._make_folders(login, job.target)
        try:
            try:
                moved = self._push(job, login, path, mkpath)
            except RemoteMkpathUnsupported:
                self._make_folders(login, job.target)
                moved = self._push(job, login, path, mkpath=False)
        except AdapterError as error:
            if error.permanent:
                self._drop_partial(login, path)
            raise
        if moved:
            return "rsync"
        # --ignore-existing left a file at the target alone: an earlier attempt's, or another's.
        with self._session(login) as session:
            return self._landed_already(session, session.capabilities(), job, path, "rsync")

    def _push(self, job: TransferJob, login: Login, path: str, mkpath: bool) -> bool:
        return push(
            job,
            self.host,
            self.port,
            path,
            login,
            self._where,
            base=self.base,
            mkpath=mkpath,
            scratch=self.context.instance_path,
            no_links=self._no_links(job.target),
        )

    def _no_links(self, target: PurePosixPath) -> tuple[str, ...]:
        """The paths below the base that must not be symbolic links when rsync writes ``target``."""
        folders = [target.parents[depth] for depth in range(len(target.parts) - 2, -1, -1)]
        paths = [*folders, target.parent / PARTIAL_DIR, target]
        return tuple(self._remote(PurePosixPath(path)) for path in paths)

    def _make_folders(self, login: Login, target: PurePosixPath) -> None:
        """Create the target's folders over SFTP, for an rsync without ``--mkpath``."""
        with self._session(login) as session:
            session.require_directory(self.base)
            session.make_directories(self.base, target.parent.parts)

    def _submit_by_sftp(self, job: TransferJob, login: Login, path: str) -> str:
        with self._session(login) as session:
            session.require_directory(self.base)
            session.make_directories(self.base, job.target.parent.parts)
            session.refuse_link(path)
            if session.exists(path) is not None:
                return self._landed_already(session, session.capabilities(), job, path, "sftp")
            upload(session, job, path)
        return "sftp"

    def _landed_already(
        self, session: HostSession, caps: Capabilities, job: TransferJob, path: str, handle: str
    ) -> str:
        if not self._holds(session, caps, job, path):
            raise DestinationExists(job.target)
        return handle

    def _drop_partial(self, login: Login, path: str) -> None:
        """Remove what a failed or cancelled rsync kept, when no retry will resume it (a full
        disk, a cancel).

        The host's rsync, cut off, moves its hidden temporary into ``.rsync-partial/`` as it
        exits, which may be a moment after the local rsync ended: wait for the temporary to go,
        removing the partial file each time it is there. A temporary that outlives the wait is
        left to its writer (it may be another run's).
        """
        folder, name = posixpath.split(path)
        partial = posixpath.join(folder, PARTIAL_DIR)
        temporary = re.compile(rf"\.{re.escape(name)}\.[A-Za-z0-9]{{6}}")
        deadline = time.monotonic() + PARTIAL_WAIT_SECONDS
        try:
            with self._session(login) as session:
                while True:
                    for remove, what in (
                        (session.sftp.remove, posixpath.join(partial, name)),
                        (session.sftp.rmdir, partial),
                    ):
                        try:
                            remove(what)
                        except OSError:
                            pass
                    try:
                        writing = any(map(temporary.fullmatch, session.sftp.listdir(folder)))
                    except OSError:
                        writing = False  # no folder: nothing was written
                    if not writing and session.exists(partial) is None:
                        return
                    if time.monotonic() > deadline:
                        log.warning("rsync's temporary for %s is still being written", path)
                        return
                    time.sleep(0.2)
        except AdapterError:
            pass  # tidying only: the error being raised matters more

    def status(self, job: TransferJob, handle: str) -> TransferStatus:
        # submit returns only once the bytes are at the target.
        return TransferStatus(DONE, bytes_moved=job.size, details={"method": handle})

    def verify(self, job: TransferJob, handle: str) -> bool:
        login = self._login(job.credentials)
        path = self._remote(job.target)
        with self._session(login) as session:
            return self._holds(session, session.capabilities(), job, path)

    def cancel(self, job: TransferJob, handle: str) -> None:
        """Nothing to stop: ``submit`` returns only when the bytes are in place.

        A submit whose job is cancelled stops its rsync (or SFTP upload) and removes what it
        left on the host, resume state included: a retry starts afresh. A submit cut off
        otherwise (a lost connection, a worker stopping) keeps its partial data hidden in
        ``.rsync-partial/`` beside the target for the next attempt to resume.
        """

    def write_file(
        self, target: PurePosixPath, content: bytes, credentials: Credentials | None
    ) -> None:
        path = self._remote(target)
        with self._session(self._login(credentials)) as session:
            session.require_directory(self.base)
            session.make_directories(self.base, target.parent.parts)
            session.refuse_link(path)  # posix-rename would replace it, not follow it: refused alike
            write_atomically(session, path, content)

    def locate(self, target: PurePosixPath) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        # A path relative to the home directory is written /~/ in sftp URLs.
        where = self.base.lstrip("/") if self.base.startswith("/") else f"~/{self.base}"
        path = posixpath.join(where, *target.parts)
        return f"sftp://{self.endpoint_options['username']}@{host}:{self.port}/{path}"


__all__ = ["SftpAdapter"]
