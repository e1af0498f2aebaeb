"""The rsync/SFTP adapter: the destination is a directory on a host reached over SSH.

A batch of files is one rsync over the stock ssh client (one login): the host's shell checks the
base path and that no link stands in the files' paths, rsync creates their folders
(``--relative``), resumes from a hidden ``.rsync-partial/`` directory and never replaces an
existing file (``--ignore-existing``); a file it did not surely send is looked at on the host, and
the batch is verified by one sha256 pass there. Failures are per file: a folder rsync could not
make fails the files below it, with rsync's words, and the others land. Hosts that run no rsync
for the account (SFTP only) get a paramiko upload per file to a hidden name and a rename.
Checksums are computed on the host (python3 for a whole batch in one command; else ``openssl`` or
``sha256sum`` per file over an exec channel) or, on SFTP-only hosts, by reading the file
back. Logins use the endpoint's ``key_file`` or, when the user activated the endpoint, their
username and password; host keys are always checked against a known_hosts file.
"""

from __future__ import annotations

import logging
import posixpath
import secrets
import socket
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
    outcome_of,
)

from .ahead import Ahead
from .batch import RsyncBatch, groups
from .errors import Where, sftp_error
from .host import TIMEOUT, Capabilities, HostSession, Login, open_session
from .rsync import RsyncUnavailable, rsync_available
from .sftp import readback_sha256, staged_path, upload, write_atomically

log = logging.getLogger(__name__)


class SftpAdapter(TransferAdapter):
    """Files land under a base directory of an SSH host (a storage server, a cluster's disk)."""

    name = "sftp"
    takes_credentials = True
    batches = True
    #: The login that the batch's verification will use, being made while its rsync runs.
    _ahead: Ahead | None = None
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
        [outcome] = self.submit_batch([job])
        if isinstance(outcome, AdapterError):
            raise outcome
        return outcome

    def submit_batch(self, jobs: list[TransferJob]) -> list[str | AdapterError]:
        """Move the batch with one rsync (one login), or file by file over SFTP where the host
        runs no rsync; each file's handle, or the error it alone met."""
        outcomes: dict[int, str | AdapterError] = {}
        for number, job in enumerate(jobs):
            try:
                staged_path(job)
            except AdapterError as error:
                outcomes[number] = error
        login = self._login(jobs[0].credentials)
        ready = [number for number in range(len(jobs)) if number not in outcomes]
        if ready and rsync_available():
            # verify_batch's login and probe, made while rsync runs (ahead.py).
            if self._ahead is not None:
                self._ahead.release()
            self._ahead = Ahead(login, lambda: self._session(login))
            try:
                paths = [self._remote(job.target) for job in jobs]
                for group in groups(ready, paths):
                    outcomes.update(RsyncBatch(self).submit([jobs[n] for n in group], group, login))
                ready = []
            except RsyncUnavailable as reason:
                log.warning(
                    "%s runs no rsync for %s (%s): moving %d file(s) by SFTP",
                    self._where.host_port,
                    login.username,
                    reason,
                    len(jobs),
                )
        elif ready:
            log.warning("rsync or ssh is not installed here: moving %d file(s) by SFTP", len(jobs))
        for number in ready:
            job = jobs[number]
            outcomes[number] = outcome_of(
                self._submit_by_sftp, job, login, self._remote(job.target)
            )
        if self._ahead is not None and all(isinstance(o, AdapterError) for o in outcomes.values()):
            self._ahead.release()  # nothing landed: no verification follows
            self._ahead = None
        return [outcomes[number] for number in range(len(jobs))]

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

    def status(self, job: TransferJob, handle: str) -> TransferStatus:
        # submit returns only once the bytes are at the target.
        return TransferStatus(DONE, bytes_moved=job.size, details={"method": handle})

    def verify(self, job: TransferJob, handle: str) -> bool:
        [verified] = self.verify_batch([job], [handle])
        if isinstance(verified, AdapterError):
            raise verified
        return verified

    def verify_batch(
        self, jobs: list[TransferJob], handles: list[str]
    ) -> list[bool | AdapterError]:
        """One login (made ahead while the batch's rsync ran) and one sha256 pass on the host
        for the whole batch."""
        login = self._login(jobs[0].credentials)
        ahead, self._ahead = self._ahead, None
        taken = ahead.take() if ahead is not None and ahead.login == login else None
        try:
            hashes = self._hashes(*taken, jobs) if taken else None
        except AdapterError:
            hashes = None  # the session made ahead was lost meanwhile: log in afresh
        finally:
            if ahead is not None:
                ahead.release()
        if hashes is None:
            with self._session(login) as session:
                hashes = self._hashes(session, session.capabilities(), jobs)
        return [
            found if isinstance(found, AdapterError) else found == job.sha256
            for job, found in zip(jobs, hashes, strict=True)
        ]

    def _hashes(
        self, session: HostSession, caps: Capabilities, jobs: list[TransferJob]
    ) -> list[str | None | AdapterError]:
        """The sha256 of each job's file on the host (None: not there): one command with
        python3, else one per file (or reading each back, on SFTP-only hosts)."""
        paths = [self._remote(job.target) for job in jobs]
        if caps.exec and "python3" in caps.tools:
            return session.sha256_many(paths, sum(job.size for job in jobs))
        hashes: list[str | None | AdapterError] = []
        for job, path in zip(jobs, paths, strict=True):
            there = session.exists(path)
            if there is None:
                hashes.append(None)
            elif there.st_size != job.size:
                hashes.append("")  # not these bytes, and no need to read them to know it
            else:
                hashes.append(outcome_of(self._sha256, session, caps, path, job.size))
        return hashes

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
