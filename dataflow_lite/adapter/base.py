"""The interface every transfer adapter implements (see :mod:`dataflow_lite.adapter`)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any, BinaryIO, ClassVar

from dataflow_lite.adapter.values import (
    Activation,
    AdapterContext,
    AdapterError,
    Check,
    Credentials,
    FoundFolder,
    Option,
    TransferJob,
    TransferStatus,
)
from dataflow_lite.settings import Setting


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
