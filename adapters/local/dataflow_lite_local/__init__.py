"""The local-copy adapter: the destination is a directory on the server's own machine.

When the staging area and the destination share a filesystem, a file is moved by a hard link
(which, unlike a rename, refuses to replace an existing file); the queue then removes the staged
name: no byte is written twice. Across filesystems it is copied to a hidden temporary name beside
its target, synced, then linked into place, so a reader never sees half a file. The temporary
is locked while it is written; one whose worker was killed is removed when a worker starts
(``remove_debris``). A copy reports its progress after each 1 MiB chunk and, when the transfer is
cancelled, stops before the next one and removes its temporary.

The tree under the root is hostile ground (a share others can write in): every folder and file
below the root is created and opened from the root's descriptor, one component at a time, never
following a symbolic link (:mod:`.safe_paths`). A dataset's own folder is created exclusively by
its first write, which leaves a marker in it; a folder without this server's marker for that very
path was made by someone else and is never written into.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from dataflow_lite.adapter import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    DATASET_FOLDER_DEPTH,
    DONE,
    Activation,
    AdapterError,
    Cancelled,
    Check,
    Credentials,
    DestinationExists,
    FoundFolder,
    Option,
    TransferAdapter,
    TransferJob,
    TransferStatus,
    abandoned,
)
from dataflow_lite.store.instance_keys import load_or_create

from .safe_paths import (
    LinkRefused,
    Tree,
    adapter_error,
    check_landed,
    landing_error,
    temporary_beside,
)
from .walk import walk

CHUNK = 1 << 20
# The hidden temporaries beside a target: ".<name>.<8 random hex digits>.part".
TEMPORARY_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.part", re.DOTALL)
# Signs the markers of dataset folders this server made (see safe_paths).
KEY_FILE = "local-folders.key"


def _copy_into(job: TransferJob, fd: int, where: Path) -> None:
    """Copy ``job.staged`` into the open file ``fd`` (the temporary for ``where``), synced.

    Reports the bytes copied after each chunk and stops between chunks once the job is
    cancelled (raising Cancelled; the caller removes the temporary).
    """
    moved = 0
    try:
        with open(job.staged, "rb") as source, os.fdopen(fd, "wb", closefd=False) as copy:
            while chunk := source.read(CHUNK):
                if job.cancelled.is_set():
                    raise Cancelled()
                copy.write(chunk)
                moved += len(chunk)
                job.progress(moved)
            copy.flush()
            os.fsync(copy.fileno())
    except OSError as error:
        raise adapter_error(f"cannot write {where}", error) from error


def _sha256_of_fd(fd: int) -> str:
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalAdapter(TransferAdapter):
    """Files land in a directory of this machine (air-gapped labs, the embedded default)."""

    name = "local"
    can_read_back = True
    key_files = (KEY_FILE,)
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

    @classmethod
    def overlaps(cls, options: dict[str, Any], other: dict[str, Any]) -> bool:
        """Whether one directory is the other or holds it (both were resolved when checked)."""
        mine, theirs = Path(options["path"]), Path(other["path"])
        return mine == theirs or mine in theirs.parents or theirs in mine.parents

    @cached_property
    def tree(self) -> Tree:
        """The tree below the root, walked without following links."""
        key_file = self.context.keys_path / KEY_FILE
        key = load_or_create(key_file, lambda: secrets.token_hex(32).encode())
        return Tree(self.root, key, marking_since=key_file.stat().st_mtime)

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

    def _already_there(self, job: TransferJob, dir_fd: int) -> str | None:
        """How an earlier attempt put the job's bytes at its target ("link", "copy"), if it did."""
        self.tree.check_not_link(dir_fd, job.target)
        found = os.stat(job.target.name, dir_fd=dir_fd, follow_symlinks=False)
        if job.staged.exists() and os.path.samestat(os.stat(job.staged), found):
            return "link"
        if not stat.S_ISREG(found.st_mode) or found.st_size != job.size:
            return None
        same = _sha256_of_fd(self.tree.open_file(dir_fd, job.target)) == job.sha256
        return "copy" if same else None

    def submit(self, job: TransferJob) -> str:
        name = job.target.name
        with self.tree.folder(job.target.parent, create=True) as folder:
            try:
                os.link(job.staged, name, dst_dir_fd=folder)
                how = "link"
            except FileExistsError:
                earlier = self._already_there(job, folder)
                if earlier is None:
                    raise DestinationExists(job.target) from None
                return earlier
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                    raise adapter_error(f"cannot write {self._path(job.target)}", error) from error
                how = "copy"
                where = self._path(job.target)
                with temporary_beside(folder, job.target, where) as (fd, temporary):
                    _copy_into(job, fd, where)
                    try:
                        os.fchmod(fd, 0o644)
                        os.link(temporary, name, src_dir_fd=folder, dst_dir_fd=folder,
                                follow_symlinks=False)  # fmt: skip
                    except FileExistsError:
                        earlier = self._already_there(job, folder)
                        if earlier is None:
                            raise DestinationExists(job.target) from None
                        return earlier
                    except OSError as error:
                        raise landing_error(where, error) from error
                    try:
                        check_landed(folder, name, fd, where)
                    except AdapterError:
                        with suppress(OSError):
                            os.unlink(name, dir_fd=folder)  # what was put in its place
                        raise
            os.fsync(folder)
        return how

    def status(self, job: TransferJob, handle: str) -> TransferStatus:
        # Local moves finish inside submit.
        return TransferStatus(DONE, bytes_moved=job.size)

    def verify(self, job: TransferJob, handle: str) -> bool:
        try:
            with self.tree.folder(job.target.parent, create=False) as folder:
                fd = self.tree.open_file(folder, job.target)
        except LinkRefused:
            raise
        except AdapterError:
            return False
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            os.close(fd)
            return False
        if handle == "link" and job.staged.exists():
            # The very file that was hashed on arrival is at the target: nothing was copied.
            os.close(fd)
            return os.path.samestat(os.stat(job.staged), found)
        return _sha256_of_fd(fd) == job.sha256

    def cancel(self, job: TransferJob, handle: str) -> None:
        """Local moves finish inside submit: nothing is ever left to cancel."""

    def write_file(
        self, target: PurePosixPath, content: bytes, credentials: Credentials | None
    ) -> None:
        with self.tree.folder(target.parent, create=True) as folder:
            # A rename would replace a planted link rather than follow it; refused all the same.
            self.tree.check_not_link(folder, target)
            where = self._path(target)
            with temporary_beside(folder, target, where) as (fd, temporary):
                try:
                    with os.fdopen(fd, "wb", closefd=False) as out:
                        out.write(content)
                        out.flush()
                        os.fchmod(fd, 0o644)
                        os.fsync(fd)
                    os.replace(temporary, target.name, src_dir_fd=folder, dst_dir_fd=folder)
                except OSError as error:
                    raise landing_error(where, error) from error
            os.fsync(folder)

    def open_file(self, target: PurePosixPath, credentials: Credentials | None) -> BinaryIO:
        with self.tree.folder(target.parent, create=False) as folder:
            fd = self.tree.open_file(folder, target)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise AdapterError(f"{self._path(target)} is not a regular file", permanent=True)
        return os.fdopen(fd, "rb")

    def locate(self, target: PurePosixPath) -> str:
        return str(self._path(target))

    def walk_datasets(self) -> Iterator[FoundFolder]:
        return walk(self.tree, TEMPORARY_NAME)

    def file_sha256(self, target: PurePosixPath) -> str:
        with self.tree.folder(target.parent, create=False) as folder:
            fd = self.tree.open_file(folder, target)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise AdapterError(f"{self._path(target)} is not a regular file", permanent=True)
        return _sha256_of_fd(fd)

    def remove_debris(self, folders: dict[PurePosixPath, set[str]]) -> list[str]:
        removed = []
        for relative, known in folders.items():
            try:
                # Reached without links; not judged by its marker: only this adapter's own
                # unlocked temporaries go, wherever the catalog puts files.
                with self.tree.folder(relative, create=False, marked=False) as folder:
                    if len(relative.parts) == DATASET_FOLDER_DEPTH:
                        self.tree.take_up_marker(folder, relative)  # before it is swept
                    for entry in os.scandir(folder):
                        if entry.name in known or not TEMPORARY_NAME.fullmatch(entry.name):
                            continue
                        with abandoned(entry.name, dir_fd=folder) as stale:
                            if stale:
                                os.unlink(entry.name, dir_fd=folder)
                                where = self._path(relative / entry.name)
                                removed.append(f"removed {where}: a write cut off before it landed")
            except AdapterError:
                continue  # nothing landed there yet, or a link on the way: not ours to sweep
        return removed
