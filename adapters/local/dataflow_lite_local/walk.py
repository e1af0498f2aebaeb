"""Walking a local endpoint's dataset folders for ``dataflow-lite reindex``, as hostile ground.

Every folder is opened from its parent's descriptor without following links (:mod:`.safe_paths`);
a link anywhere is reported and never entered, and a dataset folder is entered only when it is
this server's (its marker, or an earlier release's folder): a folder another account made is
reported and its ``metadata.json`` never read, so nobody can plant datasets in the catalog.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import PurePosixPath

from dataflow_lite.adapter import DATASET_FOLDER_DEPTH, AdapterError, FoundFolder
from dataflow_lite.store.layout import FOLDER_MARKER, METADATA_FILE, RESERVED_NAME

from .safe_paths import READ, Tree

# Far more than any metadata.json this server writes; a larger file is not read.
MAX_METADATA_BYTES = 64 << 20


def _entries(fd: int) -> list[tuple[str, os.stat_result]]:
    """The names in the open folder ``fd`` with their own (not followed) status, sorted."""
    found = []
    for name in sorted(os.listdir(fd)):
        try:
            found.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
        except FileNotFoundError:
            continue  # removed while we looked
    return found


def walk(tree: Tree, temporary: re.Pattern[str]) -> Iterator[FoundFolder]:
    """Each dataset folder below ``tree``'s root; ``temporary`` matches the adapter's
    temporaries (``re.Pattern``), which are not files of a dataset."""
    refused: list[str] = []
    with tree.folder(PurePosixPath(), create=False) as root:
        yield from _below(tree, root, PurePosixPath(), refused, temporary)
    if refused:  # links and odd entries above the dataset folders
        yield FoundFolder(PurePosixPath(), None, refused=refused)


def _below(
    tree: Tree, fd: int, relative: PurePosixPath, refused: list[str], temporary: re.Pattern[str]
) -> Iterator[FoundFolder]:
    for name, found in _entries(fd):
        child = relative / name
        if stat.S_ISLNK(found.st_mode):
            refused.append(f"{tree.where(child)} is a symbolic link: not followed")
            continue
        if not stat.S_ISDIR(found.st_mode):
            continue  # a file beside the dataset folders is not a dataset
        try:
            child_fd = tree.open_folder(fd, child)
        except AdapterError as error:
            refused.append(str(error))
            continue
        try:
            if len(child.parts) < DATASET_FOLDER_DEPTH:
                yield from _below(tree, child_fd, child, refused, temporary)
            elif not tree.is_ours(child_fd, child):
                refused.append(
                    f"{tree.where(child)} was not made by this server (no marker of its own): "
                    "not read"
                )
            else:
                yield _dataset(tree, child_fd, child, temporary)
        finally:
            os.close(child_fd)


def _dataset(tree: Tree, fd: int, folder: PurePosixPath, temporary: re.Pattern[str]) -> FoundFolder:
    result = FoundFolder(folder, _metadata(tree, fd, folder))
    _files(tree, fd, folder, PurePosixPath(), result, temporary)
    return result


def _metadata(tree: Tree, fd: int, folder: PurePosixPath) -> bytes | None:
    try:
        found = os.stat(METADATA_FILE, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(found.st_mode) or found.st_size > MAX_METADATA_BYTES:
        return None  # a link or a giant planted in our folder: reported as no metadata.json
    file_fd = os.open(METADATA_FILE, READ, dir_fd=fd)
    with os.fdopen(file_fd, "rb") as source:
        return source.read(MAX_METADATA_BYTES)


def _files(
    tree: Tree,
    fd: int,
    folder: PurePosixPath,
    inside: PurePosixPath,
    result: FoundFolder,
    temporary: re.Pattern[str],
) -> None:
    for name, found in _entries(fd):
        path = inside / name
        at_root = not inside.parts
        if (at_root and name in (METADATA_FILE, FOLDER_MARKER)) or name == RESERVED_NAME:
            continue
        if temporary.fullmatch(name):
            continue  # a copy that never landed
        if stat.S_ISLNK(found.st_mode):
            result.refused.append(f"{tree.where(folder / path)} is a symbolic link: not followed")
        elif stat.S_ISDIR(found.st_mode):
            child_fd = tree.open_folder(fd, folder / path)
            try:
                _files(tree, child_fd, folder, path, result, temporary)
            finally:
                os.close(child_fd)
        elif stat.S_ISREG(found.st_mode):
            result.files[str(path)] = found.st_size
        else:
            result.refused.append(f"{tree.where(folder / path)} is not a regular file")
