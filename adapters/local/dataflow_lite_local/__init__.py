"""The local-copy adapter: the destination is a directory on the server's own machine.

When the staging area and the destination share a filesystem, a file is moved by a hard link
(which, unlike a rename, refuses to replace an existing file); the queue then removes the staged
name: no byte is written twice. Across filesystems it is copied to a hidden temporary name beside
its target, synced, then linked into place, so a reader never sees half a file. The temporary
is locked while it is written; one whose worker was killed is removed when a worker starts
(``remove_debris``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from dataflow_lite.adapter import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    DONE,
    PERMANENT_ERRNOS,
    Activation,
    AdapterError,
    Check,
    Credentials,
    DestinationExists,
    Option,
    TransferAdapter,
    TransferJob,
    TransferStatus,
    abandoned,
    fsync_directory,
    lock_for_writing,
)

CHUNK = 1 << 20
# The hidden temporaries beside a target: ".<name>.<mkstemp's 8 random characters>.part".
TEMPORARY_SUFFIX = ".part"
TEMPORARY_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.part", re.DOTALL)


@contextmanager
def _temporary_beside(path: Path) -> Iterator[tuple[int, Path]]:
    """A new hidden file beside ``path``, locked while it is written, and removed at the end.

    The lock tells a worker's start-up sweep that the copy is alive; one whose worker was
    killed holds none, and the sweep removes it.
    """
    while True:
        try:
            fd, name = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX
            )
        except OSError as error:  # a name too long for the file system, a full or read-only disk
            raise _adapter_error(f"cannot write {path}", error) from error
        if lock_for_writing(fd, Path(name)):
            break
        os.close(fd)  # a sweep removed it before the lock was taken: make another
    temporary = Path(name)
    try:
        yield fd, temporary
    finally:
        temporary.unlink(missing_ok=True)  # linked into place by now, or given up
        os.close(fd)


def _copy_into(staged: Path, fd: int, path: Path) -> None:
    """Copy ``staged`` into the open file ``fd`` (the temporary for ``path``), synced."""
    try:
        with open(staged, "rb") as source, os.fdopen(fd, "wb", closefd=False) as copy:
            shutil.copyfileobj(source, copy, CHUNK)
            copy.flush()
            os.fsync(copy.fileno())
    except OSError as error:
        raise _adapter_error(f"cannot write {path}", error) from error


def _adapter_error(what: str, error: OSError) -> AdapterError:
    return AdapterError(
        f"{what}: {error.strerror or error}", permanent=error.errno in PERMANENT_ERRNOS
    )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalAdapter(TransferAdapter):
    """Files land in a directory of this machine (air-gapped labs, the embedded default)."""

    name = "local"
    options = (Option("path", "the directory that receives the datasets"),)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_options(options)
        checked["path"] = str(Path(checked["path"]).expanduser().resolve())
        return checked

    @classmethod
    def option_warnings(cls, options: dict[str, Any]) -> list[str]:
        root = Path(options["path"])
        if not root.is_dir():
            # Accepted (a share may be mounted later), but never created: say so now.
            return [
                f"{root} does not exist or is not a directory: transfers to this endpoint "
                "fail until it does (it is never created)"
            ]
        return []

    @property
    def root(self) -> Path:
        """The endpoint's directory."""
        return Path(self.endpoint_options["path"])

    def _path(self, target: PurePosixPath) -> Path:
        return self.root.joinpath(*target.parts)

    def activation(self, credentials: Credentials | None) -> Activation:
        root = self.root
        if not root.is_dir():
            return Activation(ACTIVATION_FAILED, f"{root} does not exist or is not a directory")
        if not os.access(root, os.W_OK | os.X_OK):
            return Activation(ACTIVATION_FAILED, f"{root} is not writable by the server")
        return Activation(ALREADY_ACTIVATED)

    def activate(self, username: str, password: str) -> Credentials | None:
        status = self.activation(None)
        if status.code != ALREADY_ACTIVATED:
            raise AdapterError(status.message, permanent=True)
        return None  # a local directory needs no credentials: nothing is kept

    def _make_parent(self, path: Path) -> None:
        if not self.root.is_dir():
            # Never create the root itself: an unmounted share would fill the server's own disk.
            raise AdapterError(
                f"the destination directory {self.root} does not exist (is it mounted?)",
                permanent=True,
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _adapter_error(f"cannot create {path.parent}", error) from error

    def check(self, credentials: Credentials | None) -> list[Check]:
        root = self.root
        checks = [Check("reachable", root.is_dir(), str(root))]
        if root.is_dir():
            try:
                with tempfile.TemporaryFile(dir=root):
                    pass
                checks.append(Check("writable", True, "a test file was created and removed"))
            except OSError as error:
                checks.append(Check("writable", False, error.strerror or str(error)))
            usage = shutil.disk_usage(root)
            checks.append(Check("free space", usage.free > 0, f"{usage.free / 2**30:.1f} GiB free"))
        return checks

    def _already_there(self, job: TransferJob, path: Path) -> bool:
        """Whether an earlier attempt already put the job's bytes at ``path``."""
        if job.staged.exists() and os.path.samefile(job.staged, path):
            return True
        return path.stat().st_size == job.size and _sha256_of(path) == job.sha256

    def submit(self, job: TransferJob) -> str:
        path = self._path(job.target)
        self._make_parent(path)
        try:
            os.link(job.staged, path)
            how = "link"
        except FileExistsError:
            if not self._already_there(job, path):
                raise DestinationExists(job.target) from None
            return "link" if os.path.samefile(job.staged, path) else "copy"
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise _adapter_error(f"cannot write {path}", error) from error
            how = "copy"
            with _temporary_beside(path) as (fd, temporary):
                _copy_into(job.staged, fd, path)
                try:
                    os.link(temporary, path)
                except FileExistsError:
                    raise DestinationExists(job.target) from None
        fsync_directory(path.parent)
        return how

    def status(self, job: TransferJob, handle: str) -> TransferStatus:
        # Local moves finish inside submit.
        return TransferStatus(DONE, bytes_moved=job.size)

    def verify(self, job: TransferJob, handle: str) -> bool:
        path = self._path(job.target)
        if not path.is_file():
            return False
        if handle == "link" and job.staged.exists():
            # The very file that was hashed on arrival is at the target: nothing was copied.
            return os.path.samefile(job.staged, path)
        return _sha256_of(path) == job.sha256

    def cancel(self, job: TransferJob, handle: str) -> None:
        """Local moves finish inside submit: nothing is ever left to cancel."""

    def write_file(
        self, target: PurePosixPath, content: bytes, credentials: Credentials | None
    ) -> None:
        path = self._path(target)
        self._make_parent(path)
        with _temporary_beside(path) as (fd, temporary):
            with os.fdopen(fd, "wb", closefd=False) as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.fchmod(fd, 0o644)
            os.replace(temporary, path)
        fsync_directory(path.parent)

    def locate(self, target: PurePosixPath) -> str:
        return str(self._path(target))

    def remove_debris(self, folders: dict[PurePosixPath, set[str]]) -> list[str]:
        root = os.path.realpath(self.root)
        removed = []
        for folder, known in folders.items():
            directory = self._path(folder)
            if os.path.realpath(directory) != os.path.join(root, *folder.parts):
                continue  # a link somewhere on the way: not a folder this adapter made
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue  # nothing landed there yet
            for entry in entries:
                if entry.name in known or not TEMPORARY_NAME.fullmatch(entry.name):
                    continue
                with abandoned(Path(entry.path)) as stale:
                    if stale:
                        os.unlink(entry.path)
                        removed.append(f"removed {entry.path}: a copy cut off before it landed")
        return removed
