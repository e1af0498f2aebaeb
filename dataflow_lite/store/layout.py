"""Where a file lands: the one module that builds destination paths.

A dataset is the folder ``<instrument slug>/<YYYY-MM-DD>/<HHMMSS>_<slug of dataset name>/`` under
its endpoint's root (``untitled_instrument`` without an instrument), its files under their
``relative_path``, and ``metadata.json`` at its root. Paths that users send are checked here
before anything else sees them.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import PurePosixPath

from slugify import slugify

UNTITLED_INSTRUMENT = "untitled_instrument"
METADATA_FILE = "metadata.json"
# The file system's limit on one path component.
MAX_NAME_BYTES = 255
# What an adapter may add to a file's name for its hidden temporary name beside the target: the
# local adapter's ``.NAME.XXXXXXXX.part`` adds 15 bytes, sftp's ``.NAME.<16 hex>.part`` 23 and
# rsync's ``.NAME.XXXXXX`` 8. A longer file name would be accepted and then never land.
TEMPORARY_NAME_EXTRA_BYTES = 32
MAX_FILE_NAME_BYTES = MAX_NAME_BYTES - TEMPORARY_NAME_EXTRA_BYTES
MAX_PATH_BYTES = 1024
# Where rsync keeps partial files beside their targets: a user's file there could be taken for one.
RESERVED_NAME = ".rsync-partial"
# The local adapter's mark on a dataset folder it made: a user's file of that name would hide it.
FOLDER_MARKER = ".dataflow-lite"
MAX_SLUG_LENGTH = 80
# How uploads name their files in the staging area, so that a start-up sweep knows its own.
STAGED_PREFIX, STAGED_SUFFIX = "upload-", ".part"
# A resumable upload's bytes, under the same prefix: the start-up sweep judges them too.
RESUMABLE_PREFIX = STAGED_PREFIX + "tus-"


class UnsafePath(ValueError):
    """A path or file name from a user that must not be used; the message says why."""


# ASCII text without what python-slugify treats specially (entities, quotes, 1,000) is only
# lowercased and cut at runs of other characters: done here with one regex, many times faster,
# because a bulk import slugs every dataset's name (a test compares both on many strings).
_SLUG_SPECIAL = re.compile(r"[&',]")
_SLUG_RUNS = re.compile(r"[^a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def slug(text: str) -> str:
    """``"Atomic force microscopy scan of PZT"`` -> ``"atomic_force_microscopy_scan_of_pzt"``."""
    if text.isascii() and not _SLUG_SPECIAL.search(text):
        plain = _SLUG_RUNS.sub("-", text.lower()).strip("-")[:MAX_SLUG_LENGTH].strip("-")
        return plain.replace("-", "_") or "untitled"
    return slugify(text, separator="_", max_length=MAX_SLUG_LENGTH) or "untitled"


def dataset_folder(instrument_name: str | None, created_at: datetime, name: str) -> PurePosixPath:
    """The folder of a dataset, relative to its endpoint's root."""
    return PurePosixPath(dataset_folder_text(instrument_name, created_at, name))


def dataset_folder_text(instrument_name: str | None, created_at: datetime, name: str) -> str:
    """:func:`dataset_folder` as text, without a path object (a bulk import makes millions)."""
    instrument = slug(instrument_name) if instrument_name else UNTITLED_INSTRUMENT
    # A slug holds no "/", so the three parts join as PurePosixPath would join them.
    return f"{instrument}/{created_at:%Y-%m-%d}/{created_at:%H%M%S}_{slug(name)}"


def check_file_name(
    name: str, what: str = "file name", max_bytes: int = MAX_FILE_NAME_BYTES
) -> str:
    """Return ``name`` if it is safe as one path component, else raise UnsafePath.

    A file's name must leave room for the adapters' temporary names (``max_bytes``); a folder's
    name, which no adapter writes under another name first, may use the file system's whole limit.
    """
    if not name:
        raise UnsafePath(f"the {what} is empty")
    if name in (".", "..", RESERVED_NAME, FOLDER_MARKER):
        raise UnsafePath(f"the {what} {name!r} is not allowed")
    if "/" in name or "\\" in name:
        raise UnsafePath(f"the {what} {name!r} contains a slash or a backslash")
    if _CONTROL.search(name):
        raise UnsafePath(f"the {what} {name!r} contains a NUL or control character")
    if len(name.encode("utf-8", "surrogatepass")) > max_bytes:
        raise UnsafePath(f"the {what} is longer than {max_bytes} bytes")
    return name


def check_relative_path(relative_path: str) -> PurePosixPath:
    """Return ``relative_path`` as a path below the dataset folder, or raise UnsafePath.

    Refused: absolute paths, ``.`` and ``..``, backslashes, NUL and control characters, and
    empty components (``a//b``, a trailing slash). The empty string is the dataset's root.
    """
    return PurePosixPath(*relative_path_parts(relative_path))


def relative_path_parts(relative_path: str) -> tuple[str, ...]:
    """:func:`check_relative_path` as the path's components (none for the dataset's root)."""
    if relative_path == "":
        return ()
    if len(relative_path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafePath(f"relative_path is longer than {MAX_PATH_BYTES} bytes")
    if relative_path.startswith("/"):
        raise UnsafePath(f"relative_path {relative_path!r} is absolute")
    parts = relative_path.split("/")
    if "" in parts:
        raise UnsafePath(f"relative_path {relative_path!r} has an empty component")
    for part in parts:
        check_file_name(part, what="relative_path component", max_bytes=MAX_NAME_BYTES)
    return tuple(parts)


def file_target(folder: str, relative_path: PurePosixPath, name: str) -> PurePosixPath:
    """A file's path relative to its endpoint's root."""
    return PurePosixPath(folder) / relative_path / name


def metadata_target(folder: str) -> PurePosixPath:
    """The path of a dataset's ``metadata.json``, relative to its endpoint's root."""
    return PurePosixPath(folder) / METADATA_FILE


def resumable_staged_name(upload_id: str) -> str:
    """The name in the staging area of the bytes of resumable upload ``upload_id``."""
    return f"{RESUMABLE_PREFIX}{upload_id}{STAGED_SUFFIX}"
