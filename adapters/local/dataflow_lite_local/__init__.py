"""The local-copy adapter: the destination is a directory on the server's own machine.

When the staging area and the destination share a filesystem, a file is moved by a hard link
(which, unlike a rename, refuses to replace an existing file) and the staged name removed: no
byte is written twice. Across filesystems it is copied to a hidden temporary name beside its
target, synced, then linked into place, so a reader never sees half a file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from dataflow_lite.adapter import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    DONE,
    Activation,
    AdapterError,
    Credentials,
    DestinationExists,
    TransferAdapter,
    TransferStatus,
)

CHUNK = 1 << 20


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalAdapter(TransferAdapter):
    """Files land in a directory of this machine (air-gapped labs, the embedded default)."""

    name = "local"
    options = {"path": "the directory that receives the datasets"}

    @classmethod
    def check_options(cls, options):  # type: ignore[no-untyped-def]
        checked = super().check_options(options)
        checked["path"] = str(Path(checked["path"]).expanduser().resolve())
        return checked

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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise AdapterError(
                f"cannot create {path.parent}: {error.strerror}", permanent=True
            ) from error

    def _copy_beside(self, staged: Path, path: Path) -> Path:
        """Copy ``staged`` to a hidden temporary file beside ``path``, synced; return its path."""
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with open(staged, "rb") as source, os.fdopen(fd, "wb") as copy:
                shutil.copyfileobj(source, copy, CHUNK)
                copy.flush()
                os.fsync(copy.fileno())
        except BaseException:
            os.unlink(temporary)
            raise
        return Path(temporary)

    def submit(
        self, staged: Path, target: PurePosixPath, sha256: str, credentials: Credentials | None
    ) -> str:
        path = self._path(target)
        self._make_parent(path)
        how = "link"
        try:
            os.link(staged, path)
        except FileExistsError:
            raise DestinationExists(target) from None
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise AdapterError(f"cannot write {path}: {error.strerror}") from error
            how = "copy"
            temporary = self._copy_beside(staged, path)
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise DestinationExists(target) from None
            finally:
                os.unlink(temporary)
        os.unlink(staged)
        _fsync_directory(path.parent)
        return f"{how}:{target}"

    def status(self, handle: str) -> TransferStatus:
        # Local moves finish inside submit.
        return TransferStatus(DONE, bytes_moved=self._path(self._target(handle)).stat().st_size)

    @staticmethod
    def _target(handle: str) -> PurePosixPath:
        return PurePosixPath(handle.partition(":")[2])

    def verify(
        self, handle: str, target: PurePosixPath, sha256: str, credentials: Credentials | None
    ) -> bool:
        path = self._path(target)
        if not path.is_file():
            return False
        if handle.startswith("link:"):
            # The staged inode itself is at the target: the bytes hashed on arrival are there.
            return True
        return _sha256_of(path) == sha256

    def cancel(self, handle: str) -> None:
        """Local moves finish inside submit: nothing is ever left to cancel."""

    def write_file(
        self, target: PurePosixPath, content: bytes, credentials: Credentials | None
    ) -> None:
        path = self._path(target)
        self._make_parent(path)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        _fsync_directory(path.parent)

    def locate(self, target: PurePosixPath) -> str:
        return str(self._path(target))
