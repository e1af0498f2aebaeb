"""File-system helpers adapters share: a writer's lock, the tests for files being written and
for abandoned ones, and syncing a directory's names."""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def lock_for_writing(fd: int, path: Path | str, dir_fd: int | None = None) -> bool:
    """Mark the new file ``path`` (open as ``fd``; relative to ``dir_fd`` if given) as being
    written, until ``fd`` is closed.

    The lock is how a sweeper tells a file still being written from one whose writer died (the
    kernel drops it with the process). False if a sweeper removed the name before the lock was
    taken: the caller makes another file.
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, dir_fd=dir_fd, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _open_regular(path: Path | str, dir_fd: int | None) -> int | None:
    """A read descriptor of ``path`` if it is a regular file (never through a link), else None."""
    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:  # gone already, or a symlink (ELOOP)
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


@contextmanager
def abandoned(path: Path | str, dir_fd: int | None = None) -> Iterator[bool]:
    """Whether ``path`` (relative to ``dir_fd`` if given) is a regular file that no live writer
    holds; held so while the block runs.

    While the block runs no writer can take the file up again, so it may be removed there.
    """
    fd = _open_regular(path, dir_fd)
    if fd is None:  # not ours to judge
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its writer is alive (EWOULDBLOCK), or no lock can tell (ENOLCK)
            yield False
            return
        try:
            same = os.path.samestat(
                os.fstat(fd), os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
            )
        except OSError:
            same = False
        yield same
    finally:
        os.close(fd)


def being_written(path: Path | str, dir_fd: int | None = None) -> bool:
    """Whether ``path`` (relative to ``dir_fd`` if given) is a regular file that a live writer
    holds (:func:`lock_for_writing`)."""
    fd = _open_regular(path, dir_fd)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:  # no locks here (ENOLCK): nobody can hold one
        return False
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Make the names in directory ``path`` durable (after creating or renaming a file there)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
