"""Folders and files below an endpoint's root, opened one component at a time, no link followed.

Every folder below the root is opened with ``O_NOFOLLOW | O_DIRECTORY`` from its parent's
descriptor (and created there with ``mkdir(name, dir_fd=...)``), and every file is opened or
linked by name within its folder's descriptor: a symbolic link planted anywhere below the root is
refused, never followed, whatever races with the walk. The root itself is the administrator's
choice and is opened as configured.

A dataset's own folder (``<instrument>/<date>/<HHMMSS>_<slug>``, the third level) is created
exclusively by the dataset's first write, which leaves a marker file in it holding an HMAC of the
folder's relative path under a key kept in the instance folder. Its later writes (other files, a
retry, ``metadata.json``) find the marker and go on; a folder without it was made by someone else
(a neighbour who guessed the name) and is never written into. A marker rather than the transfer's
memo because a dataset's files are many transfers and ``metadata.json`` has none; an HMAC rather
than the owner's uid because a NAS may map every account to one. A folder that an earlier
release made (no marker, but this account's, with this account's ``metadata.json`` older than the
key) is marked on its next write rather than refused.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath

from dataflow_lite.adapter import (
    DATASET_FOLDER_DEPTH,
    PERMANENT_ERRNOS,
    AdapterError,
    abandoned,
    being_written,
    lock_for_writing,
)
from dataflow_lite.store.layout import FOLDER_MARKER, METADATA_FILE

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a file belongs answers at once rather than block the reader.
READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# How long a second writer waits for the first to leave its marker in a folder it just made,
# counted again from the last time it saw the marker being written (its temporary locked: a
# slow sync on a busy disk); and for how long at most it counts so: a neighbour's locked file
# must not hold the dataset's transfers.
MARKER_WAIT, MARKING_WAIT = 2.0, 60.0
# The start of a marker's temporary's name (``temporary_beside``).
MARKING = f".{FOLDER_MARKER}."
# Why a marker cannot be opened when it is no file of this server's: a link, another account's.
NOT_A_MARKER = frozenset({errno.ELOOP, errno.EACCES, errno.EPERM, errno.ENXIO})


def adapter_error(what: str, error: OSError) -> AdapterError:
    """``error`` in plain words, permanent when no retry can mend it."""
    return AdapterError(
        f"{what}: {error.strerror or error}", permanent=error.errno in PERMANENT_ERRNOS
    )


@contextmanager
def temporary_beside(folder: int, target: PurePosixPath, where: Path) -> Iterator[tuple[int, str]]:
    """A new hidden file beside ``target`` in the open ``folder``, locked while it is written,
    and removed at the end (linked into place by then, or given up): a file's copy, a
    ``metadata.json``, a folder's marker.

    The lock tells a worker's start-up sweep, and a transfer waiting for a marker, that the
    write is alive; one whose worker was killed holds none, and the sweep removes it. It is
    made readable by this account alone (the caller opens it up before it lands), so no other
    account can open it to lock it first.
    """
    while True:
        name = f".{target.name}.{secrets.token_hex(4)}.part"
        try:
            fd = os.open(name, CREATE, 0o600, dir_fd=folder)
        except FileExistsError:
            continue
        except OSError as error:  # a name too long for the file system, a full or read-only disk
            raise adapter_error(f"cannot write {where}", error) from error
        try:
            locked = lock_for_writing(fd, name, dir_fd=folder)
        except OSError as error:  # no locks on this file system (NFS without lockd)
            os.close(fd)
            with suppress(OSError):
                os.unlink(name, dir_fd=folder)
            raise adapter_error(f"cannot write {where}", error) from error
        if locked:
            break
        os.close(fd)  # a sweep removed it before the lock was taken: make another
    failed = True
    try:
        yield fd, name
        failed = False
    finally:
        try:
            os.unlink(name, dir_fd=folder)
        except FileNotFoundError:
            pass
        except OSError as error:
            if not failed:  # else the body's own error says more
                raise adapter_error(f"cannot remove {where.parent / name}", error) from error
        finally:
            os.close(fd)


def landing_error(where: Path, error: OSError) -> AdapterError:
    """Why a temporary could not land at ``where``; tried again when it was taken away."""
    failed = adapter_error(f"cannot write {where}", error)
    failed.permanent &= not isinstance(error, FileNotFoundError)
    return failed


def _is_at(fd: int, folder: int, name: str) -> bool:
    """Whether ``name`` in ``folder`` (not followed if a link) is the file open as ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(name, dir_fd=folder, follow_symlinks=False))
    except OSError:  # gone (ENOENT), or gone from another host's view (ESTALE)
        return False


def check_landed(folder: int, name: str, fd: int, where: Path) -> None:
    """Refuse unless ``name`` in ``folder`` is the temporary open as ``fd``, just linked there
    (never through a link): another account may have put something else in its place."""
    if not _is_at(fd, folder, name):
        raise AdapterError(
            f"{where} was replaced while it was written: its temporary was swapped by someone else",
            permanent=True,
        )


class LinkRefused(AdapterError):
    """A symbolic link stands where a folder or file of the dataset belongs."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class Tree:
    """The tree below one endpoint root, walked from the root's descriptor."""

    def __init__(self, root: Path, key: bytes, marking_since: float = 0.0) -> None:
        self.root = root
        self.key = key
        #: When this server began marking its folders (its key file's age), for older folders.
        self.marking_since = marking_since

    def where(self, relative: PurePosixPath) -> Path:
        """``relative`` as a path users can read (never opened by this name)."""
        return self.root.joinpath(*relative.parts)

    def refusal(self, dir_fd: int, relative: PurePosixPath) -> LinkRefused | None:
        """A permanent error if the name ``relative`` in folder ``dir_fd`` is a symbolic link."""
        try:
            found = os.stat(relative.name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return None
        if stat.S_ISLNK(found.st_mode):
            link = os.readlink(relative.name, dir_fd=dir_fd)
            return LinkRefused(
                f"{self.where(relative)} is a symbolic link (to {link}): links at the "
                "destination are never followed"
            )
        return None

    def check_not_link(self, dir_fd: int, relative: PurePosixPath) -> None:
        """Raise the refusal if ``relative`` in folder ``dir_fd`` is a symbolic link."""
        refused = self.refusal(dir_fd, relative)
        if refused is not None:
            raise refused

    def _open(self, dir_fd: int, relative: PurePosixPath, flags: int, what: str) -> int:
        """``relative`` in folder ``dir_fd`` opened with ``flags``; a link there is refused."""
        try:
            return os.open(relative.name, flags, dir_fd=dir_fd)
        except OSError as error:
            refused = self.refusal(dir_fd, relative)
            if refused is not None:
                raise refused from None
            if flags & os.O_DIRECTORY and error.errno == errno.ENOTDIR:
                raise AdapterError(
                    f"{self.where(relative)} is not a folder", permanent=True
                ) from None
            raise adapter_error(f"cannot {what} {self.where(relative)}", error) from error

    def _open_folder(self, dir_fd: int, relative: PurePosixPath) -> int:
        return self._open(dir_fd, relative, DIRECTORY, "open")

    def token(self, relative: PurePosixPath) -> bytes:
        """What the marker of the dataset folder ``relative`` holds."""
        message = b"dataflow-lite local dataset folder\0" + str(relative).encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest().encode()

    def _made_before_marking(self, folder_fd: int) -> bool:
        """Whether a folder without a marker is one this server made before it marked them.

        Such a folder is this process's account's, and so is its ``metadata.json`` (every dataset
        folder got one at creation), written before the marking key existed; no other account
        can make files owned by this one.
        """
        uid = os.geteuid()
        try:
            folder = os.fstat(folder_fd)
            metadata = os.stat(METADATA_FILE, dir_fd=folder_fd, follow_symlinks=False)
        except OSError:
            return False
        return (
            folder.st_uid == uid
            and stat.S_ISREG(metadata.st_mode)
            and metadata.st_uid == uid
            and metadata.st_mtime < self.marking_since
        )

    def is_ours(self, folder_fd: int, relative: PurePosixPath) -> bool:
        """Whether the dataset folder ``relative`` (open as ``folder_fd``) is this server's: its
        marker holds this path's HMAC, or an earlier release made it. Never waits, marks or
        raises: a walk reports the folders it will not trust."""
        try:
            found = self._marker(folder_fd, relative)
        except AdapterError:
            return False
        if found is None:
            return self._made_before_marking(folder_fd)
        return hmac.compare_digest(found, self.token(relative))

    def _marker(self, folder_fd: int, relative: PurePosixPath) -> bytes | None:
        """What the folder's marker holds: None when there is none, empty when it is nothing
        this server may read as a file (a link, a FIFO, a folder, another account's file)."""
        try:
            fd = os.open(FOLDER_MARKER, READ, dir_fd=folder_fd)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno in NOT_A_MARKER:
                return b""
            raise adapter_error(f"cannot read {self.where(relative)}'s marker", error) from error
        try:
            return os.read(fd, 200).strip() if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        except OSError as error:
            raise adapter_error(f"cannot read {self.where(relative)}'s marker", error) from error
        finally:
            os.close(fd)

    def open_folder(self, dir_fd: int, relative: PurePosixPath) -> int:
        """A descriptor of the folder ``relative`` in folder ``dir_fd``; never through a link."""
        return self._open_folder(dir_fd, relative)

    def _leave_marker(self, parent_fd: int | None, folder_fd: int, relative: PurePosixPath) -> bool:
        """Mark the folder; False if another transfer marked it first (only an earlier
        release's folder, ``parent_fd`` None, is marked by two at once).

        The marker is written beside its name and linked into place whole: a transfer of the
        dataset that finds the folder meanwhile sees no marker yet (and waits), never an empty
        one. A folder this write made (``parent_fd`` given) is removed when marking fails, so
        the next try makes it again.
        """
        where = self.where(relative / FOLDER_MARKER)
        try:
            with temporary_beside(folder_fd, PurePosixPath(FOLDER_MARKER), where) as (fd, name):
                with os.fdopen(fd, "wb", closefd=False) as out:
                    out.write(self.token(relative) + b"\n")
                os.fchmod(fd, 0o644)
                os.fsync(fd)
                os.link(name, FOLDER_MARKER, src_dir_fd=folder_fd, dst_dir_fd=folder_fd,
                        follow_symlinks=False)  # fmt: skip
                check_landed(folder_fd, FOLDER_MARKER, fd, where)
            return True
        except (OSError, AdapterError) as error:
            if parent_fd is None and isinstance(error, FileExistsError):
                return False
            if parent_fd is not None:
                with suppress(OSError):
                    os.rmdir(relative.name, dir_fd=parent_fd)  # unless someone wrote in it
            if isinstance(error, AdapterError):
                raise
            raise landing_error(where, error) from error

    def _marker_temporaries(self, folder_fd: int, relative: PurePosixPath) -> list[str]:
        try:
            with os.scandir(folder_fd) as entries:
                return [entry.name for entry in entries if entry.name.startswith(MARKING)]
        except OSError as error:
            raise adapter_error(f"cannot list {self.where(relative)}", error) from error

    def _being_marked(self, folder_fd: int, relative: PurePosixPath) -> bool:
        """Whether a live write is leaving the folder's marker (its temporary is locked)."""
        return any(
            being_written(name, dir_fd=folder_fd)
            for name in self._marker_temporaries(folder_fd, relative)
        )

    def take_up_marker(self, folder_fd: int, relative: PurePosixPath) -> None:
        """Link into place a marker whose writer was killed after writing it whole: an
        abandoned temporary holding this path's HMAC, which only this server makes."""
        expected = self.token(relative) + b"\n"
        for name in self._marker_temporaries(folder_fd, relative):
            with abandoned(name, dir_fd=folder_fd) as stale:
                if not stale:
                    continue
                try:
                    fd = os.open(name, READ, dir_fd=folder_fd)
                    try:
                        if os.read(fd, len(expected) + 1) != expected:
                            continue
                        os.fchmod(fd, 0o644)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.link(name, FOLDER_MARKER, src_dir_fd=folder_fd, dst_dir_fd=folder_fd,
                            follow_symlinks=False)  # fmt: skip
                except OSError:
                    continue  # marked meanwhile, or not this server's to adopt
                with suppress(OSError):
                    os.unlink(name, dir_fd=folder_fd)
                return

    def _check_marker(self, parent_fd: int, folder_fd: int, relative: PurePosixPath) -> None:
        """Go on only into a folder with this server's marker for ``relative``, waiting for a
        first write that is leaving it; an earlier release's folder is marked now."""
        start = time.monotonic()
        deadline = start + MARKER_WAIT
        while (found := self._marker(folder_fd, relative)) is None:
            now = time.monotonic()
            if now < start + MARKING_WAIT and self._being_marked(folder_fd, relative):
                deadline = now + MARKER_WAIT  # as long again once it ends: a failed write's
                # temporary goes a moment before its folder does
            if now >= deadline or not _is_at(folder_fd, parent_fd, relative.name):
                break
            time.sleep(0.05)  # the dataset's first write may be leaving it right now
        if found is None:
            self.take_up_marker(folder_fd, relative)
            found = self._marker(folder_fd, relative)
        if found is None and self._made_before_marking(folder_fd):
            if self._leave_marker(None, folder_fd, relative):
                return
            found = self._marker(folder_fd, relative)  # another transfer marked it just now
        if found is None and not _is_at(folder_fd, parent_fd, relative.name):
            raise AdapterError(f"{self.where(relative)} was removed while this transfer waited")
        if found is None and self._being_marked(folder_fd, relative):
            raise AdapterError(
                f"{self.where(relative)} is still being marked after {MARKING_WAIT:g} s"
            )
        if found is None or not hmac.compare_digest(found, self.token(relative)):
            raise AdapterError(
                f"{self.where(relative)} already exists and was not made by this dataset's "
                "transfers: a dataset's folder is never taken over",
                permanent=True,
            )

    @contextmanager
    def folder(
        self, relative: PurePosixPath, *, create: bool, marked: bool = True
    ) -> Iterator[int]:
        """A descriptor of the folder ``relative``, made on the way when ``create``; a dataset
        folder on the way must be this server's (its marker), unless ``marked`` is False."""
        try:
            is_dir = self.root.is_dir()
        except OSError as error:
            raise adapter_error(f"cannot open {self.root}", error) from error
        if not is_dir:
            # Never create the root itself: an unmounted share would fill the server's own disk.
            raise AdapterError(
                f"the destination directory {self.root} does not exist (is it mounted?)",
                permanent=True,
            )
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise adapter_error(f"cannot open {self.root}", error) from error
        try:
            walked = PurePosixPath()
            for depth, name in enumerate(relative.parts, start=1):
                walked = walked / name
                made = False
                if create:
                    try:
                        os.mkdir(name, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        pass
                    except OSError as error:
                        raise adapter_error(f"cannot create {self.where(walked)}", error) from error
                child = self._open_folder(fd, walked)
                try:
                    if depth == DATASET_FOLDER_DEPTH and marked:
                        if made:
                            self._leave_marker(fd, child, walked)
                        else:
                            self._check_marker(fd, child, walked)
                except BaseException:
                    os.close(child)
                    raise
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def open_file(self, dir_fd: int, relative: PurePosixPath) -> int:
        """A read descriptor of the file ``relative`` in folder ``dir_fd``; never through a link."""
        return self._open(dir_fd, relative, READ, "read")
