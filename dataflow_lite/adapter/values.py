"""The values adapters and the transfer queue exchange: errors, jobs, statuses, options.

Plain data, no behaviour: :mod:`dataflow_lite.adapter.base` holds the interface itself.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

# Activation codes, as DataFlow (after Globus) names them.
ALREADY_ACTIVATED = "AlreadyActivated"
AUTO_ACTIVATED = "AutoActivated.CachedCredential"
ACTIVATION_FAILED = "AutoActivationFailed"

# Errnos that no retry can mend until a person acts (permission, read-only, full, quota, missing,
# a name the file system refuses as too long).
PERMANENT_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.ENOENT,
        errno.ENAMETOOLONG,
    }
)

# How many leading components of a target name the dataset's own folder.
DATASET_FOLDER_DEPTH = 3

# Transfer states.
QUEUED, RUNNING, VERIFYING, DONE, FAILED = "queued", "running", "verifying", "done", "failed"


class AdapterError(Exception):
    """A transfer or activation failed; ``permanent`` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Cancelled(AdapterError):
    """The transfer was cancelled while the adapter moved it; what it wrote is removed."""

    def __init__(self) -> None:
        super().__init__("cancelled", permanent=True)


class DestinationExists(AdapterError):
    """A file is already at the target path: adapters never overwrite."""

    def __init__(self, target: PurePosixPath) -> None:
        super().__init__(f"{target} already exists at the destination", permanent=True)


@dataclass(frozen=True)
class Activation:
    """Whether the adapter can write to the endpoint for a user now, and if not, why."""

    code: str
    message: str = ""


@dataclass(frozen=True)
class Credentials:
    """A user's credentials for one endpoint, as the adapter wants them kept (encrypted at rest)."""

    username: str
    secret: str


@dataclass
class TransferStatus:
    """Where one file's transfer stands."""

    state: str
    bytes_moved: int = 0
    error: str | None = None
    permanent: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class FoundFolder:
    """A dataset folder found at the destination by :meth:`TransferAdapter.walk_datasets`."""

    folder: PurePosixPath
    #: The bytes of its ``metadata.json``, or None when it has none.
    metadata: bytes | None
    #: The size of each regular file below it, by path relative to the folder.
    files: dict[str, int] = field(default_factory=dict)
    #: What was not looked into, and why (a link, a folder another account made).
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AdapterContext:
    """What the server tells an adapter about itself."""

    instance_path: Path
    staging_dir: Path
    #: The server's settings; an adapter instance sees only its own, by short name.
    settings: dict[str, Any] = field(default_factory=dict)
    #: The folder of the instance keys (the ``keys_dir`` setting), None: the instance folder.
    keys_dir: Path | None = None

    @property
    def keys_path(self) -> Path:
        """Where the adapter keeps its ``key_files``: shared by every host of one catalog."""
        return self.keys_dir or self.instance_path


@dataclass
class TransferJob:
    """One file to move, as the transfer queue hands it to an adapter, attempt after attempt."""

    staged: Path
    target: PurePosixPath
    sha256: str
    size: int
    credentials: Credentials | None
    #: What the adapter remembered on earlier attempts of this transfer (see ``remember``).
    memo: dict[str, Any] = field(default_factory=dict)
    #: Store a memo value in the catalog at once, before a step that must not run twice
    #: (for example a Globus submission id, kept before the task is submitted).
    remember: Callable[[str, Any], None] = lambda key, value: None
    #: Report how many of the file's bytes are at the destination so far (a total, not a
    #: step); cheap to call per chunk: the queue stores the latest value now and then.
    progress: Callable[[int], None] = lambda moved: None
    #: Set when the transfer is cancelled (or another worker took it over): an adapter that
    #: moves bytes itself stops soon after, removes what it wrote and raises Cancelled.
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Option:
    """An endpoint option an adapter declares: the CLI's ``--flag`` and the admin page's field."""

    name: str
    help: str
    type: type = str
    required: bool = True
    #: Shown as a password field, never echoed back.
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Check:
    """One line of an endpoint's preflight check: reachable, authenticated, writable, free space."""

    name: str
    ok: bool
    detail: str = ""
