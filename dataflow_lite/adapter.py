"""The transfer adapter interface, and how adapters are found.

An adapter moves files from the server's staging area to one kind of destination (a local
directory, an SSH host, a Globus collection). Adapters are plugins: each is a class registered in
the entry-point group ``dataflow_lite.adapters`` under its name, the local-copy adapter that ships
with dataflow-lite included. The core knows them only through this interface::

    [project.entry-points."dataflow_lite.adapters"]
    local = "dataflow_lite_local:LocalAdapter"

Every path an adapter is given is relative to the endpoint's root and has already been checked
by :mod:`dataflow_lite.layout`; an adapter never sees a path a user typed. Each is
``<instrument>/<date>/<dataset folder>/...``: the first ``DATASET_FOLDER_DEPTH`` components name
the dataset's own folder, which an adapter creates afresh rather than adopt.
"""

from __future__ import annotations

import abc
import errno
import fcntl
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, ClassVar

from dataflow_lite.settings import Setting

ENTRY_POINT_GROUP = "dataflow_lite.adapters"

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


class TransferAdapter(abc.ABC):
    """Moves staged files to one endpoint. One instance serves one endpoint.

    The transfer queue calls ``submit``, then ``status`` until the transfer is done or failed,
    then ``verify`` (through their ``_batch`` forms, which an adapter that sets ``batches``
    overrides to move many files at once); a transient AdapterError anywhere is retried later
    with the same job (and its memo), a permanent one fails the transfer. Requests never wait
    on these calls, except ``cancel`` of a transfer that has a handle. While ``submit`` moves
    bytes itself, it reports them through ``job.progress`` and watches ``job.cancelled``; one
    that cannot simply does not.
    """

    #: The name users see in ``transport.protocol``; also the entry-point name.
    name: ClassVar[str]
    #: Endpoint options the adapter takes (``--path``, ``--host``...).
    options: ClassVar[tuple[Option, ...]] = ()
    #: The option whose value is also the endpoint's id (a Globus collection's UUID), if any.
    id_option: ClassVar[str | None] = None
    #: Server settings the adapter reads, named ``<adapter>_<name>`` in the configuration.
    settings: ClassVar[tuple[Setting, ...]] = ()
    #: Whether activation takes a user's username and password (and a page offers a form).
    takes_credentials: ClassVar[bool] = False
    #: Whether ``open_file`` reads landed files back (the dataset page offers downloads).
    can_read_back: ClassVar[bool] = False
    #: Whether ``submit_batch`` moves many files better than one by one (one rsync, one Globus
    #: task): the queue then hands the adapter the waiting files of a dataset together.
    batches: ClassVar[bool] = False
    #: Secrets the adapter keeps in the keys folder (random, made at start if missing): hosts
    #: sharing a catalog must share them, so they are part of the keys' fingerprint.
    key_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, endpoint_options: dict[str, Any], context: AdapterContext) -> None:
        self.endpoint_options = endpoint_options
        self.context = context

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Return the endpoint options to store, or raise ValueError naming what is wrong.

        Values of typed options (``int``) are converted; the message names the option's flag.
        """
        given = {key for key, value in options.items() if value not in (None, "")}
        missing = [
            option.flag for option in cls.options if option.required and option.name not in given
        ]
        if missing:
            raise ValueError(f"a {cls.name} endpoint needs {', '.join(missing)}")
        checked = {}
        for option in cls.options:
            if option.name in given:
                value = options[option.name]
                try:
                    checked[option.name] = option.type(value)
                except (TypeError, ValueError):
                    kind = {"int": "whole number"}.get(option.type.__name__, option.type.__name__)
                    raise ValueError(f"{option.flag} must be a {kind}, not {value!r}") from None
        return checked

    @classmethod
    def option_warnings(cls, options: dict[str, Any]) -> list[str]:
        """What looks wrong in an endpoint's stored options without being refused (a cheap
        local look, never a network call), e.g. a directory that does not exist yet."""
        return []

    @classmethod
    def overlaps(cls, options: dict[str, Any], other: dict[str, Any]) -> bool:
        """Whether two endpoints with these (checked) options would write into the same tree.

        Registration refuses an endpoint that overlaps one of the same adapter; an adapter that
        cannot tell says no.
        """
        return False

    @abc.abstractmethod
    def activation(self, credentials: Credentials | None) -> Activation:
        """Whether transfers to the endpoint can run now with ``credentials`` (maybe None)."""

    @abc.abstractmethod
    def activate(self, username: str, password: str) -> Credentials | None:
        """Prove ``username``/``password`` against the endpoint; return what to keep, if anything.

        Raise AdapterError with a plain message when they are refused.
        """

    @abc.abstractmethod
    def check(self, credentials: Credentials | None) -> list[Check]:
        """A live preflight: reachable, authenticated, writable, free space when it can tell."""

    @abc.abstractmethod
    def submit(self, job: TransferJob) -> str:
        """Start (or, on a retry, resume) moving ``job.staged`` to ``job.target``; return a handle.

        It may block until the bytes are moved (it runs in a queue worker) or return at once
        with a handle that ``status`` follows. The file appears under its target name only when
        complete. An existing file at the target is never replaced: if it already holds the
        job's bytes (an earlier attempt got that far) the submit succeeds, otherwise it raises
        DestinationExists. The staged file must be left in place: the queue deletes it after
        verification.
        """

    @abc.abstractmethod
    def status(self, job: TransferJob, handle: str) -> TransferStatus:
        """Where the transfer ``handle`` stands."""

    def submit_batch(self, jobs: list[TransferJob]) -> list[str | AdapterError]:
        """Start moving several files of one dataset at once; a handle (or the error) per job.

        The queue hands an adapter a batch only when its class sets ``batches``; by default
        each job is submitted alone. An AdapterError returned in a job's place fails that file
        alone; one raised fails the whole batch.
        """
        return [outcome_of(self.submit, job) for job in jobs]

    def status_batch(self, jobs: list[TransferJob], handles: list[str]) -> list[TransferStatus]:
        """Where each job of a batch stands (``handles[i]`` is ``jobs[i]``'s)."""
        return [self.status(job, handle) for job, handle in zip(jobs, handles, strict=True)]

    def verify_batch(
        self, jobs: list[TransferJob], handles: list[str]
    ) -> list[bool | AdapterError]:
        """``verify`` for each job of a batch; an error in a job's place is that file's alone."""
        return [
            outcome_of(self.verify, job, handle) for job, handle in zip(jobs, handles, strict=True)
        ]

    @abc.abstractmethod
    def verify(self, job: TransferJob, handle: str) -> bool:
        """Whether the file at ``job.target`` holds the bytes whose sha256 the upload computed.

        Checked at the destination: by a checksum computed there or by reading the file back,
        or, when the transfer linked the very file that was hashed (one filesystem), by finding
        that file there.
        """

    @abc.abstractmethod
    def cancel(self, job: TransferJob, handle: str) -> None:
        """Stop the transfer ``handle`` if it is still running (one that a handle names, such as
        a Globus task; a ``submit`` still running stops through ``job.cancelled``)."""

    @abc.abstractmethod
    def write_file(
        self, target: PurePosixPath, content: bytes, credentials: Credentials | None
    ) -> None:
        """Write a small file (``metadata.json``) at ``target``, replacing it atomically."""

    def open_file(self, target: PurePosixPath, credentials: Credentials | None) -> BinaryIO:
        """The landed file at ``target``, open for reading from its start, for a download.

        Only for adapters that declare ``can_read_back``; never through a symbolic link. Raise
        AdapterError (permanent) when the file is not there, or not a regular file.
        """
        raise AdapterError(f"{self.name} endpoints cannot read files back", permanent=True)

    def walk_datasets(self) -> Iterator[FoundFolder]:
        """Every dataset folder (``<instrument>/<date>/<folder>``) at the destination that this
        server made, for ``dataflow-lite reindex``; what it would not enter is reported."""
        raise AdapterError(
            f"the {self.name} adapter cannot walk its destination: reindex reads local endpoints",
            permanent=True,
        )

    def file_sha256(self, target: PurePosixPath) -> str:
        """The sha256 of the landed file at ``target`` (for ``reindex``)."""
        raise AdapterError(f"the {self.name} adapter cannot read files back", permanent=True)

    @abc.abstractmethod
    def locate(self, target: PurePosixPath) -> str:
        """Where ``target`` is, in words a user can follow (a path, a URL)."""

    def remove_debris(self, folders: dict[PurePosixPath, set[str]]) -> list[str]:
        """Remove the temporaries a crashed transfer left directly inside ``folders``.

        ``folders`` maps each folder (relative to the root) where the catalog puts files to the
        names it knows there, which are never removed. Only the adapter's own temporaries whose
        writer is gone may go; resume state (rsync's partial files) stays. Return what was
        removed, in words a log can show. By default there is nothing to remove.
        """
        return []


def outcome_of(call: Callable[..., Any], *args: Any) -> Any:
    """What ``call(*args)`` returns, or the AdapterError it raises."""
    try:
        return call(*args)
    except AdapterError as error:
        return error


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


@contextmanager
def abandoned(path: Path | str, dir_fd: int | None = None) -> Iterator[bool]:
    """Whether ``path`` (relative to ``dir_fd`` if given) is a regular file that no live writer
    holds; held so while the block runs.

    While the block runs no writer can take the file up again, so it may be removed there.
    """
    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:  # gone already, or a symlink (ELOOP): not ours to judge
        yield False
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False  # its writer is alive
            return
        try:
            same = os.path.samestat(
                os.fstat(fd), os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
            )
        except FileNotFoundError:
            same = False
        yield same
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Make the names in directory ``path`` durable (after creating or renaming a file there)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discover_adapters() -> dict[str, type[TransferAdapter]]:
    """Every installed adapter class by name, from the ``dataflow_lite.adapters`` entry points."""
    found: dict[str, type[TransferAdapter]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            adapter = entry_point.load()
        except Exception as error:
            raise ImportError(
                f"adapter plugin {entry_point.name!r} ({entry_point.value}) failed to load: {error}"
            ) from error
        if not (isinstance(adapter, type) and issubclass(adapter, TransferAdapter)):
            raise TypeError(f"entry point {entry_point.value} is not a TransferAdapter subclass")
        found[entry_point.name] = adapter
    return found


def adapter_settings(classes: dict[str, type[TransferAdapter]]) -> tuple[Setting, ...]:
    """Every adapter's own settings, named ``<adapter>_<name>`` in the configuration."""
    return tuple(
        replace(setting, name=f"{name}_{setting.name}")
        for name, adapter_class in sorted(classes.items())
        for setting in adapter_class.settings
    )


class Adapters:
    """The installed adapters of one app, and adapter instances per endpoint."""

    def __init__(self, classes: dict[str, type[TransferAdapter]], context: AdapterContext):
        self.classes = classes
        self.context = context

    @property
    def names(self) -> list[str]:
        """The names of the installed adapters, sorted."""
        return sorted(self.classes)

    def get_class(self, name: str) -> type[TransferAdapter]:
        """The adapter class called ``name``, or a LookupError naming the installed ones."""
        try:
            return self.classes[name]
        except KeyError:
            raise LookupError(
                f"adapter {name!r} is not installed; installed: {', '.join(self.names) or 'none'}"
            ) from None

    def for_endpoint(self, adapter: str, options: dict[str, Any]) -> TransferAdapter:
        """An adapter instance for an endpoint of type ``adapter`` with ``options``."""
        adapter_class = self.get_class(adapter)
        prefix = adapter + "_"
        own = {
            name.removeprefix(prefix): value
            for name, value in self.context.settings.items()
            if name.startswith(prefix)
        }
        return adapter_class(options, replace(self.context, settings=own))

    def locate(self, endpoint: Any, target: PurePosixPath) -> str:
        """Where ``target`` is on ``endpoint`` (a row with ``adapter`` and ``options``), in words.

        An endpoint whose adapter is no longer installed still has a name to show.
        """
        try:
            return self.for_endpoint(endpoint.adapter, endpoint.options).locate(target)
        except LookupError:
            return f"{target} on {endpoint.name} (adapter {endpoint.adapter!r} is not installed)"
