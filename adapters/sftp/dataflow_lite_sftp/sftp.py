"""Moving and reading files over plain SFTP, for hosts that give no shell (and so no rsync).

A file is uploaded to a hidden name beside its target, named after the job's checksum so that a
retry finds and resumes its own partial upload (and never another file's), then renamed into
place with SFTP's plain rename, which refuses to replace an existing file.
"""

from __future__ import annotations

import hashlib
import posixpath
import secrets
from pathlib import Path

import paramiko

from dataflow_lite.adapter import AdapterError, DestinationExists, TransferJob

from .errors import sftp_error
from .host import HostSession

CHUNK = 1 << 20
BUFFER = 1 << 20


def partial_name(path: str, sha256: str) -> str:
    """The hidden name beside ``path`` that an upload of these bytes uses until complete."""
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f".{name}.{sha256[:16]}.part")


def readback_sha256(session: HostSession, path: str) -> str:
    """The sha256 of ``path``, read back over SFTP and hashed here."""
    digest = hashlib.sha256()
    try:
        with session.sftp.open(path, "rb", bufsize=BUFFER) as remote:
            remote.prefetch()
            while chunk := remote.read(CHUNK):
                digest.update(chunk)
    except (OSError, paramiko.SSHException, EOFError) as error:
        raise sftp_error(f"cannot read {path} back", error, session.where) from error
    return digest.hexdigest()


def _no_space(session: HostSession, folder: str, needed: int) -> AdapterError | None:
    """A permanent error if the host has less than ``needed`` bytes free under ``folder``."""
    free = session.free_bytes(folder)
    if free is not None and free < needed:
        return AdapterError(
            f"no space left on {session.where.host_port} under {folder}: "
            f"{free} bytes free, {needed} more needed",
            permanent=True,
        )
    return None


def _write_failure(
    session: HostSession, job: TransferJob, temporary: str, error: BaseException
) -> AdapterError:
    """Why writing ``temporary`` failed: SFTP reports a full disk as a bare "Failure"."""
    if isinstance(error, OSError):  # the host answered: measure its free space to tell
        landed = session.exists(temporary)
        if landed is not None:
            needed = job.size - (landed.st_size or 0)
            full = _no_space(session, posixpath.dirname(temporary), needed)
            if full is not None:
                _remove_quietly(session, temporary)  # leave the full disk as it was
                return full
    return sftp_error(f"cannot write {temporary}", error, session.where)


def upload(session: HostSession, job: TransferJob, path: str) -> None:
    """Upload ``job.staged`` to ``path`` (whose directory exists), resuming an earlier attempt."""
    sftp = session.sftp
    temporary = partial_name(path, job.sha256)
    session.refuse_link(temporary)  # its name is predictable: a link there would be written
    before = session.exists(temporary)
    offset = (before.st_size or 0) if before is not None else 0
    if offset > job.size:
        offset = 0  # not a prefix of these bytes: start again
    try:
        # Unbuffered: paramiko reports a failed pipelined write from write() only; a buffered
        # file would raise it again from close() and stay open on the host.
        with (
            open(job.staged, "rb") as source,
            sftp.open(temporary, "r+b" if offset else "wb", bufsize=0) as remote,
        ):
            remote.set_pipelined(True)
            source.seek(offset)
            remote.seek(offset)
            while chunk := source.read(CHUNK):
                remote.write(chunk)
        landed = session.exists(temporary)
        if landed is None or landed.st_size != job.size:
            # paramiko drops the answers to the last pipelined writes: the size tells.
            raise OSError(f"{landed.st_size if landed else 0} of {job.size} bytes written")
    except FileNotFoundError as error:
        if not job.staged.exists():
            raise AdapterError(f"the staged file {job.staged} is missing", permanent=True) from None
        raise sftp_error(f"cannot write {temporary}", error, session.where) from error
    except (OSError, paramiko.SSHException, EOFError) as error:
        raise _write_failure(session, job, temporary, error) from error
    try:
        sftp.rename(temporary, path)
    except (OSError, paramiko.SSHException, EOFError) as error:
        there = session.exists(path)
        if there is None:
            raise sftp_error(
                f"cannot rename {temporary} to {path}", error, session.where
            ) from error
        _remove_quietly(session, temporary)
        if there.st_size != job.size or readback_sha256(session, path) != job.sha256:
            raise DestinationExists(job.target) from None


def _remove_quietly(session: HostSession, path: str) -> None:
    try:
        session.sftp.remove(path)
    except (OSError, paramiko.SSHException, EOFError):
        pass  # only tidying up


def write_atomically(session: HostSession, path: str, content: bytes) -> None:
    """Write ``content`` at ``path`` through a hidden temporary name, replacing it atomically."""
    sftp = session.sftp
    folder, name = posixpath.split(path)
    temporary = posixpath.join(folder, f".{name}.{secrets.token_hex(6)}.part")
    try:
        with sftp.open(temporary, "wb") as remote:
            remote.write(content)
        sftp.chmod(temporary, 0o644)
        try:
            sftp.posix_rename(temporary, path)
        except OSError:
            # A server without OpenSSH's posix-rename extension: plain rename does not replace,
            # so there is a moment without the file, but never one with half of it.
            if session.exists(path) is not None:
                sftp.remove(path)
            sftp.rename(temporary, path)
    except (OSError, paramiko.SSHException, EOFError) as error:
        _remove_quietly(session, temporary)
        raise sftp_error(f"cannot write {path}", error, session.where) from error


def staged_path(job: TransferJob) -> Path:
    """The staged file, or a permanent error when it is gone."""
    if not job.staged.is_file():
        raise AdapterError(f"the staged file {job.staged} is missing", permanent=True)
    return job.staged
