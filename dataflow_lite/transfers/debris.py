"""What a crash leaves behind, removed when a transfer worker starts.

A web worker killed mid-upload leaves its ``upload-*.part`` in the staging area; a transfer worker
killed mid-write leaves an adapter's hidden temporary at the destination. Neither is ever taken
up again (save a dataset folder's marker written whole, which the local adapter links into
place rather than remove). A file is debris only when no process holds it: uploads and adapters
keep an exclusive ``flock`` on a file while they write it (the kernel drops it when they die), so
an upload still arriving in a live web worker, or a copy running in another worker, is never
touched. Staged files
that a transfer names (queued, running, failed or cancelled, all of which may still move it) stay,
and so do the bytes of resumable uploads that have not expired (``upload-tus-*.part``). Expired
uploads are removed here too, row and bytes, at start-up and by the queue's periodic sweep.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path, PurePosixPath

from sqlalchemy import Engine, delete
from sqlmodel import col, select

from dataflow_lite.adapter import Adapters, abandoned
from dataflow_lite.store import layout
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.models import (
    Dataset,
    DatasetFile,
    Endpoint,
    ResumableUpload,
    Transfer,
    utcnow,
)


def remove_debris(engine: Engine, adapters: Adapters, staging_dir: Path) -> list[str]:
    """Remove stale staged files, expired uploads and destination temporaries; a line each."""
    return [
        *remove_expired_uploads(engine, staging_dir),
        *remove_stale_staged_files(engine, staging_dir),
        *_remove_temporaries(engine, adapters),
    ]


def _staged_names(engine: Engine, only: str | None = None) -> set[str]:
    """The names of the staged files that transfers or unfinished uploads still hold.

    Staging names are unique; an upload's expiry is not judged here (``remove_expired_uploads``
    removes its row first).
    """
    with session_scope(engine, write=False) as session:
        query = select(Transfer.staged_path).where(col(Transfer.staged_path).is_not(None))
        if only is not None:
            query = query.where(col(Transfer.staged_path).endswith("/" + only, autoescape=True))
        names = {Path(path).name for path in session.exec(query).all() if path}
        uploads = select(ResumableUpload.id).where(col(ResumableUpload.file_id).is_(None))
        names |= {layout.resumable_staged_name(upload_id) for upload_id in session.exec(uploads)}
        return names


def remove_expired_uploads(engine: Engine, staging_dir: Path) -> list[str]:
    """Remove the resumable uploads whose time ran out, then their bytes; one line each.

    Complete ones lose only their row (their file is catalogued). Bytes a request is still
    writing stay until it lets go (the next sweep takes them).
    """
    with session_scope(engine) as session:
        expired = session.exec(
            select(ResumableUpload.id, ResumableUpload.file_id).where(
                col(ResumableUpload.expires_at) <= utcnow()
            )
        ).all()
        if expired:
            session.execute(
                delete(ResumableUpload).where(
                    col(ResumableUpload.id).in_([upload_id for upload_id, _ in expired])
                )
            )
    removed = []
    for upload_id, file_id in expired:
        if file_id is not None:
            continue
        path = staging_dir / layout.resumable_staged_name(upload_id)
        with abandoned(path) as stale:
            if stale:
                path.unlink()
        removed.append(f"removed upload {upload_id}: it expired before its last byte arrived")
    return removed


def remove_stale_staged_files(engine: Engine, staging_dir: Path) -> list[str]:
    """Remove the staged uploads that no transfer names and no live web worker is writing."""
    held = _staged_names(engine)
    removed = []
    for path in sorted(staging_dir.glob(f"{layout.STAGED_PREFIX}*{layout.STAGED_SUFFIX}")):
        if path.name in held:
            continue
        with abandoned(path) as stale:
            # With the lock taken, its web worker has died, or recorded the file and let go:
            # only the catalog, read again now, can tell which.
            if stale and path.name not in _staged_names(engine, only=path.name):
                path.unlink()
                removed.append(f"removed {path}: an upload cut off before it was recorded")
    return removed


def _folders(engine: Engine) -> dict[str, dict[PurePosixPath, set[str]]]:
    """By endpoint: each folder the catalog puts files in, with the names it knows there."""
    folders: dict[str, dict[PurePosixPath, set[str]]] = defaultdict(lambda: defaultdict(set))
    with session_scope(engine, write=False) as session:
        for endpoint_id, folder in session.exec(select(Dataset.endpoint_id, Dataset.folder)):
            folders[endpoint_id][PurePosixPath(folder)].add(layout.METADATA_FILE)
        rows = session.exec(
            select(
                Dataset.endpoint_id, Dataset.folder, DatasetFile.relative_path, DatasetFile.name
            ).join(DatasetFile, col(DatasetFile.dataset_id) == col(Dataset.id))
        )
        for endpoint_id, folder, relative_path, name in rows:
            folders[endpoint_id][PurePosixPath(folder, relative_path)].add(name)
    return folders


def _remove_temporaries(engine: Engine, adapters: Adapters) -> list[str]:
    """Ask each endpoint's adapter to remove its own temporaries in the catalog's folders."""
    with session_scope(engine, write=False) as session:
        endpoints = [
            (e.id, e.name, e.adapter, dict(e.options)) for e in session.exec(select(Endpoint))
        ]
    folders = _folders(engine)
    removed = []
    for endpoint_id, name, adapter_name, options in endpoints:
        if endpoint_id not in folders:
            continue
        try:
            adapter = adapters.for_endpoint(adapter_name, options)
        except LookupError as error:  # its adapter is not installed: nothing can be judged
            removed.append(f"endpoint {name!r} not swept: {error}")
            continue
        try:
            removed += adapter.remove_debris(dict(folders[endpoint_id]))
        except OSError as error:  # an unmounted share must not stop the worker from starting
            removed.append(f"endpoint {name!r} not swept: {error.strerror or error}")
    return removed
