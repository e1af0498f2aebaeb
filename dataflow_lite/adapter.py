"""The transfer adapter interface, and how adapters are found.

An adapter moves files from the server's staging area to one kind of destination (a local
directory, an SSH host, a Globus collection). Adapters are plugins: each is a class registered in
the entry-point group ``dataflow_lite.adapters`` under its name, the local-copy adapter that ships
with dataflow-lite included. The core knows them only through this interface::

    [project.entry-points."dataflow_lite.adapters"]
    local = "dataflow_lite_local:LocalAdapter"

Every path an adapter is given is relative to the endpoint's root and has already been checked
by :mod:`dataflow_lite.layout`; an adapter never sees a path a user typed.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

ENTRY_POINT_GROUP = "dataflow_lite.adapters"

# Activation codes, as DataFlow (after Globus) names them.
ALREADY_ACTIVATED = "AlreadyActivated"
AUTO_ACTIVATED = "AutoActivated.CachedCredential"
ACTIVATION_FAILED = "AutoActivationFailed"

# Transfer states.
QUEUED, RUNNING, VERIFYING, DONE, FAILED = "queued", "running", "verifying", "done", "failed"


class AdapterError(Exception):
    """A transfer or activation failed; ``permanent`` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


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


@dataclass(frozen=True)
class AdapterContext:
    """What the server tells an adapter about itself."""

    instance_path: Path
    staging_dir: Path


class TransferAdapter(abc.ABC):
    """Moves staged files to one endpoint. One instance serves one endpoint."""

    #: The name users see in ``transport.protocol``; also the entry-point name.
    name: ClassVar[str]
    #: Endpoint options the adapter needs (``--path``, ``--host``...), with their help text.
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, endpoint_options: dict[str, Any], context: AdapterContext) -> None:
        self.endpoint_options = endpoint_options
        self.context = context

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Return the endpoint options to store, or raise ValueError naming what is wrong."""
        missing = sorted(set(cls.options) - {k for k, v in options.items() if v})
        if missing:
            raise ValueError(f"a {cls.name} endpoint needs --{', --'.join(missing)}")
        return {key: options[key] for key in cls.options if options.get(key) is not None}

    @abc.abstractmethod
    def activation(self, credentials: Credentials | None) -> Activation:
        """Whether transfers to the endpoint can run now with ``credentials`` (maybe None)."""

    @abc.abstractmethod
    def activate(self, username: str, password: str) -> Credentials | None:
        """Prove ``username``/``password`` against the endpoint; return what to keep, if anything.

        Raise AdapterError with a plain message when they are refused.
        """

    @abc.abstractmethod
    def submit(
        self, staged: Path, target: PurePosixPath, sha256: str, credentials: Credentials | None
    ) -> str:
        """Start moving ``staged`` to ``target``; return a handle for :meth:`status`.

        The file appears under ``target`` only when complete, and never replaces an existing
        file (raise DestinationExists). The staged file may be consumed (moved) by the adapter.
        """

    @abc.abstractmethod
    def status(self, handle: str) -> TransferStatus:
        """Where the transfer ``handle`` stands."""

    @abc.abstractmethod
    def verify(
        self, handle: str, target: PurePosixPath, sha256: str, credentials: Credentials | None
    ) -> bool:
        """Whether the file at ``target`` holds the bytes whose sha256 the upload computed.

        Checked at the destination: by reading the file back or by a checksum computed there,
        or, when the transfer moved the very file that was hashed (a rename on one
        filesystem), by finding it there whole.
        """

    @abc.abstractmethod
    def cancel(self, handle: str) -> None:
        """Stop the transfer ``handle`` if it is still running."""

    @abc.abstractmethod
    def write_file(
        self, target: PurePosixPath, content: bytes, credentials: Credentials | None
    ) -> None:
        """Write a small file (``metadata.json``) at ``target``, replacing it atomically."""

    @abc.abstractmethod
    def locate(self, target: PurePosixPath) -> str:
        """Where ``target`` is, in words a user can follow (a path, a URL)."""


def discover_adapters() -> dict[str, type[TransferAdapter]]:
    """Every installed adapter class by name, from the ``dataflow_lite.adapters`` entry points."""
    found: dict[str, type[TransferAdapter]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        adapter = entry_point.load()
        if not (isinstance(adapter, type) and issubclass(adapter, TransferAdapter)):
            raise TypeError(f"entry point {entry_point.value} is not a TransferAdapter subclass")
        found[entry_point.name] = adapter
    return found


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
        return self.get_class(adapter)(options, self.context)
