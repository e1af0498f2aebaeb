"""Copies of ``metadata.json`` staged for Globus to carry, one per destination file."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def stage_metadata(folder: Path, key: str, content: bytes) -> Path:
    """Put ``content`` in ``folder`` under a name of its own for ``key`` (a destination).

    The same destination always gets the same name and is replaced atomically, so rewrites
    leave no files behind. A task still copying an older version should then find that the
    checksums at both ends differ and copy the file again, so the newest version wins.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".metadata-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.chmod(temporary, 0o644)  # the collection's user must read it
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path
