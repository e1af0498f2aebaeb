"""The local-copy adapter: the destination is a directory on the server's own machine.

When the staging area and the destination share a filesystem, a file is moved by a hard link
(which, unlike a rename, refuses to replace an existing file); the queue then removes the staged
name: no byte is written twice. Across filesystems it is copied to a hidden temporary name beside
its target, synced, then linked into place, so a reader never sees half a file.

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
import secrets
import shutil
import stat
import tempfile
from functools import cached_property
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
from dataflow_lite.store.instance_keys import load_or_create

from .safe_paths import LinkRefused, Tree, adapter_error

CHUNK = 1 << 20
# Signs the markers of dataset folders this server made (see safe_paths).
KEY_FILE = "local-folders.key"


def _sha256_of_fd(fd: int) -> str:
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as source:
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
        key_file = self.context.instance_path / KEY_FILE
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

    def _copy_beside(self, staged: Path, dir_fd: int, target: PurePosixPath) -> str:
        """Copy ``staged`` to a hidden temporary file beside ``target``, synced; return its name."""
        temporary = f".{target.name}.{secrets.token_hex(4)}.part"
        try:
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                0o644,
                dir_fd=dir_fd,
            )
        except OSError as error:
            raise adapter_error(f"cannot write {self._path(target)}", error) from error
        try:
            with open(staged, "rb") as source, os.fdopen(fd, "wb") as copy:
                shutil.copyfileobj(source, copy, CHUNK)
                copy.flush()
                os.fsync(copy.fileno())
        except BaseException as error:
            os.unlink(temporary, dir_fd=dir_fd)
            if isinstance(error, OSError):
                raise adapter_error(f"cannot write {self._path(target)}", error) from error
            raise
        return temporary

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
                temporary = self._copy_beside(job.staged, folder, job.target)
                try:
                    os.link(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
                except FileExistsError:
                    earlier = self._already_there(job, folder)
                    if earlier is None:
                        raise DestinationExists(job.target) from None
                    return earlier
                finally:
                    os.unlink(temporary, dir_fd=folder)
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
            temporary = f".{target.name}.{secrets.token_hex(4)}.part"
            try:
                fd = os.open(
                    temporary,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                    0o644,
                    dir_fd=folder,
                )
                try:
                    with os.fdopen(fd, "wb") as out:
                        out.write(content)
                        out.flush()
                        os.fchmod(out.fileno(), 0o644)
                        os.fsync(out.fileno())
                    os.replace(temporary, target.name, src_dir_fd=folder, dst_dir_fd=folder)
                except BaseException:
                    try:
                        os.unlink(temporary, dir_fd=folder)
                    except FileNotFoundError:
                        pass
                    raise
            except OSError as error:
                raise adapter_error(f"cannot write {self._path(target)}", error) from error
            os.fsync(folder)

    def locate(self, target: PurePosixPath) -> str:
        return str(self._path(target))
