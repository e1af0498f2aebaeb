"""The Globus adapter: the destination is a Globus (GCSv5) collection.

This server's staging area is itself exposed as a Globus collection (``globus_source_collection``,
seen there at ``globus_source_path``); each file becomes one Globus Transfer task from there to
the endpoint's collection, run by Globus while dataflow-lite only follows it. The server acts as
one confidential client (see :mod:`.auth`); a user's endpoint password is never used.

Tasks copy with ``sync_level="checksum"`` and ``verify_checksum=True``, and hand Globus the
upload's own sha256 as ``external_checksum`` so that Globus checks the copy against it at the
destination (``globus_checksum_algorithm``, SHA256 by default). A submit is idempotent: the
submission id is kept in the job's memo before the task is submitted, and Globus answers a
repeated submission id with the task it already started.

An existing file is never replaced: on a first attempt the target is looked up
(``operation_stat``) and anything there raises DestinationExists. On a retry that lookup is
skipped, since the file may be this transfer's own work, and ``sync_level="checksum"`` makes
Globus skip an identical file. A file that a third party writes at the target between that
lookup and the task would still be replaced: Globus offers no "create only" transfer. Globus
writes in place, too: a reader at the destination may see a file before it is complete.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import globus_sdk
from globus_sdk.transport import RetryConfig

from dataflow_lite.adapter import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    FAILED,
    Activation,
    AdapterContext,
    AdapterError,
    Check,
    Credentials,
    DestinationExists,
    Option,
    TransferAdapter,
    TransferJob,
    TransferStatus,
    outcome_of,
)
from dataflow_lite.settings import Setting

from .auth import transfer_client
from .errors import globus_errors
from .preflight import failed_checks, preflight
from .staging import stage_metadata
from .tasks import task_status

SETTINGS = (
    Setting(
        "client_id", str, "", "Client id of the Globus confidential client the server acts as."
    ),
    Setting("client_secret", str, "", "Secret of that Globus confidential client."),
    Setting(
        "source_collection",
        str,
        "",
        "UUID of the Globus collection that exposes this server's staging area.",
    ),
    Setting(
        "source_path",
        str,
        "/",
        "The staging directory as the source collection sees it.",
    ),
    Setting(
        "checksum_algorithm",
        str,
        "SHA256",
        "Checksum Globus computes at both ends; with SHA256 it also checks the copy against the "
        "upload's sha256. Empty: the collection's default (MD5).",
    ),
)

# Where write_file stages metadata.json copies, inside the staging area.
METADATA_STAGING = "globus-metadata"


def _verified(task: dict[str, Any]) -> bool:
    """Whether a task succeeded with checksum verification on."""
    return task.get("status") == "SUCCEEDED" and task.get("verify_checksum") is True


def _label(target: PurePosixPath) -> str:
    # Globus accepts few characters in a task label (no slashes).
    return re.sub(r"[^A-Za-z0-9 _,.()-]", " ", f"dataflow-lite {target}")[:128]


class GlobusAdapter(TransferAdapter):
    """Files land on a Globus collection, carried by Globus Transfer tasks."""

    name = "globus"
    batches = True
    options = (
        Option("collection", "the destination Globus collection's UUID (also the endpoint's id)"),
        Option("path", "the base directory on that collection (absolute, e.g. /data/dataflow)"),
    )
    id_option = "collection"
    settings = SETTINGS

    def __init__(
        self,
        endpoint_options: dict[str, Any],
        context: AdapterContext,
        *,
        retry_config: RetryConfig | None = None,
    ) -> None:
        """``retry_config`` replaces globus-sdk's retries (tests pass ``max_retries=0``)."""
        super().__init__(endpoint_options, context)
        self.retry_config = retry_config
        self._client: globus_sdk.TransferClient | None = None

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_options(options)
        try:
            checked["collection"] = str(uuid.UUID(str(checked["collection"])))
        except ValueError:
            raise ValueError(
                f"--collection {checked['collection']!r} is not a Globus collection UUID"
            ) from None
        path = PurePosixPath(str(checked["path"]))
        if not path.is_absolute() or ".." in path.parts:
            raise ValueError(f"--path {checked['path']!r} must be absolute and without '..'")
        checked["path"] = str(path)
        return checked

    # Configuration -----------------------------------------------------------------------------

    def _setting(self, name: str) -> str:
        default = next(setting.default for setting in SETTINGS if setting.name == name)
        value = self.context.settings.get(name, default)
        if not value:
            raise AdapterError(
                f"the Globus adapter needs the setting globus_{name}", permanent=True
            )
        return str(value)

    @property
    def transfer(self) -> globus_sdk.TransferClient:
        """The Transfer client, made (and its token fetched or loaded) on first use."""
        if self._client is None:
            client_id, secret = self._setting("client_id"), self._setting("client_secret")
            with globus_errors("issue a token to the server's Globus client"):
                self._client = transfer_client(
                    client_id, secret, self.context.instance_path, self.retry_config
                )
        return self._client

    @property
    def collection(self) -> str:
        """The destination collection's UUID."""
        return str(self.endpoint_options["collection"])

    def _destination(self, target: PurePosixPath) -> str:
        return str(PurePosixPath(self.endpoint_options["path"]) / target)

    def _source(self, staged: Path) -> str:
        """``staged`` as the source collection sees it."""
        try:
            relative = staged.resolve().relative_to(self.context.staging_dir.resolve())
        except ValueError:
            relative = Path(staged.name)
        return str(PurePosixPath(self._setting("source_path"), *relative.parts))

    def _transfer_data(self, target: PurePosixPath, **fields: Any) -> globus_sdk.TransferData:
        return globus_sdk.TransferData(
            self._setting("source_collection"),
            self.collection,
            label=_label(target),
            sync_level="checksum",
            verify_checksum=True,
            **fields,
        )

    def _add_item(
        self, data: globus_sdk.TransferData, staged: Path, target: PurePosixPath, sha256: str | None
    ) -> None:
        """Add the one file of a task, with the checksum Globus should use and, when it can
        check it, the ``sha256`` the copy must have."""
        algorithm = str(self.context.settings.get("checksum_algorithm", "SHA256"))
        data.add_item(
            self._source(staged),
            self._destination(target),
            checksum_algorithm=algorithm or globus_sdk.MISSING,
            external_checksum=(
                sha256 if sha256 and algorithm.upper() == "SHA256" else globus_sdk.MISSING
            ),
        )

    # Activation and preflight ------------------------------------------------------------------

    def _probe(self) -> AdapterError | None:
        """List the endpoint's path: None when it answers, else what went wrong."""
        try:
            with globus_errors(f"list {self.endpoint_options['path']} on {self.collection}"):
                self.transfer.operation_ls(
                    self.collection, path=self.endpoint_options["path"], limit=1
                )
        except AdapterError as error:
            return error
        return None

    def activation(self, credentials: Credentials | None) -> Activation:
        """GCSv5 has no activation: a live listing of the endpoint's path says whether it works.

        A missing data_access consent comes back as ``consent_required`` with the scopes to
        grant. ``credentials`` are not used: the server acts as its own Globus client.
        """
        error = self._probe()
        if error is not None:
            return Activation(ACTIVATION_FAILED, str(error))
        return Activation(ALREADY_ACTIVATED)

    def activate(self, username: str, password: str) -> Credentials | None:
        """Check access as ``activation`` does; the password is neither kept nor sent anywhere."""
        error = self._probe()
        if error is not None:
            raise error
        return None

    def check(self, credentials: Credentials | None) -> list[Check]:
        """A live preflight through Globus (:func:`.preflight.preflight`)."""
        try:
            client = self.transfer
        except AdapterError as error:
            return failed_checks(error)
        return preflight(client, self.collection, self.endpoint_options["path"])

    # Transfers ---------------------------------------------------------------------------------

    def _refuse_existing(self, target: PurePosixPath) -> None:
        """Raise DestinationExists if anything is at ``target`` already."""
        with globus_errors(f"look up {target} on {self.collection}"):
            try:
                self.transfer.operation_stat(self.collection, self._destination(target))
            except globus_sdk.TransferAPIError as error:
                if error.http_status == 404 and error.code != "EndpointNotFound":
                    return
                raise
        raise DestinationExists(target)

    def submit(self, job: TransferJob) -> str:
        """Submit (or, on a retry, submit again under the same submission id) one Globus task.

        Returns the task id at once; ``status`` follows the task.
        """
        [outcome] = self.submit_batch([job])
        if isinstance(outcome, AdapterError):
            raise outcome
        return outcome

    def submit_batch(self, jobs: list[TransferJob]) -> list[str | AdapterError]:
        """One Globus task for the batch's new files (each target looked up first: a file there
        fails alone); files retried under a remembered submission id go again in theirs."""
        outcomes: dict[int, str | AdapterError] = {}
        groups: dict[str | None, list[int]] = {}
        for number, job in enumerate(jobs):
            submission_id = job.memo.get("submission_id")
            if not submission_id:
                # No task of ours can exist yet, so whatever is at the target is someone else's.
                found = outcome_of(self._refuse_existing, job.target)
                if isinstance(found, AdapterError):
                    outcomes[number] = found
                    continue
            groups.setdefault(submission_id or None, []).append(number)
        for submission_id, numbers in groups.items():
            if submission_id is None:
                with globus_errors("reserve a submission id"):
                    submission_id = str(self.transfer.get_submission_id()["value"])
                # Kept before the submit: a retry after a crash reuses it and Globus, seeing
                # the same id, returns the task it started instead of starting a second one.
                for number in numbers:
                    jobs[number].remember("submission_id", submission_id)
            members = [jobs[number] for number in numbers]
            data = self._transfer_data(members[0].target, submission_id=submission_id)
            for job in members:
                self._add_item(data, job.staged, job.target, job.sha256)
            what = str(members[0].target) + (f" and {len(members) - 1} more" if numbers[1:] else "")
            with globus_errors(f"start the transfer of {what}"):
                task_id = str(self.transfer.submit_transfer(data)["task_id"])
            for number in numbers:
                jobs[number].remember("task_id", task_id)
                outcomes[number] = task_id
        return [outcomes[number] for number in range(len(jobs))]

    def status_batch(self, jobs: list[TransferJob], handles: list[str]) -> list[TransferStatus]:
        """One look at each task of the batch (many files share one)."""
        seen: dict[str, tuple[TransferJob, TransferStatus]] = {}
        statuses = []
        for job, handle in zip(jobs, handles, strict=True):
            if handle not in seen:
                seen[handle] = (job, self.status(job, handle))
            elif not seen[handle][0].memo.get("task_id"):
                # status forgot the task for its first file (it is over): for every file in it.
                job.remember("submission_id", None)
                job.remember("task_id", None)
            statuses.append(seen[handle][1])
        return statuses

    def verify_batch(
        self, jobs: list[TransferJob], handles: list[str]
    ) -> list[bool | AdapterError]:
        """One look at each task of the batch."""
        tasks = {handle: outcome_of(self._task, handle) for handle in set(handles)}
        return [
            task if isinstance(task, AdapterError) else _verified(task)
            for task in (tasks[handle] for handle in handles)
        ]

    def _task(self, handle: str) -> dict[str, Any]:
        with globus_errors(f"report on the task {handle}"):
            return dict(self.transfer.get_task(handle).data)

    def status(self, job: TransferJob, handle: str) -> TransferStatus:
        """The task's state; a failed task is forgotten so that a resubmit starts a new one.

        An INACTIVE task (credentials or consent lapsed) is cancelled, so that it cannot
        resume and write the file after the transfer was reported failed.
        """
        task = self._task(handle)
        result = task_status(task)
        if result.state != FAILED:
            return result
        if task.get("status") == "INACTIVE":
            try:
                self.cancel(job, handle)
            except AdapterError as error:
                result.error = f"{result.error}; cancelling it failed too: {error}"
                return result  # it may still resume: keep its submission id
            result.error = f"{result.error}; dataflow-lite cancelled it"
        # The task is over: a later submit must get a new submission id, or Globus would only
        # hand back this failed task again.
        job.remember("submission_id", None)
        job.remember("task_id", None)
        return result

    def verify(self, job: TransferJob, handle: str) -> bool:
        """True when the task SUCCEEDED with checksum verification on; else False.

        The checksums are Globus's, computed at both ends: with ``verify_checksum`` Globus
        checksums the staged file (the very bytes whose sha256 the upload computed) at the
        source and the copy at the destination, and fails the file on a mismatch; with the
        default ``globus_checksum_algorithm`` (SHA256) it also compares the copy with the
        upload's sha256 itself. dataflow-lite cannot read the file back over Globus.
        """
        return _verified(self._task(handle))

    def cancel(self, job: TransferJob, handle: str) -> None:
        """Cancel the task; Globus answers a finished one without error."""
        with globus_errors(f"cancel the task {handle}"):
            self.transfer.cancel_task(handle)

    def write_file(
        self, target: PurePosixPath, content: bytes, credentials: Credentials | None
    ) -> None:
        """Stage ``content`` and submit a task that puts it at ``target``; returns once submitted.

        ``sync_level="checksum"`` replaces a different file at the target, as a metadata
        rewrite must. Globus writes in place: a reader may briefly see a partial file.
        """
        key = f"{self.collection}:{self._destination(target)}"
        staged = stage_metadata(self.context.staging_dir / METADATA_STAGING, key, content)
        data = self._transfer_data(target)  # the SDK fetches a submission id of its own
        # No external checksum: a newer rewrite may replace the staged copy while this task
        # runs, and the task must then copy the newer version rather than fail.
        self._add_item(data, staged, target, None)
        with globus_errors(f"start the transfer of {target}"):
            self.transfer.submit_transfer(data)

    def locate(self, target: PurePosixPath) -> str:
        return f"globus://{self.collection}/{self._destination(target).lstrip('/')}"
