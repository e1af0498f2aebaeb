"""The transfer queue as users and administrators see it: list, look at, retry and cancel; and
an administrator's move of a lost host's transfers to this one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import col, select

from dataflow_lite.adapter import DONE, FAILED
from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit
from dataflow_lite.services.errors import Conflict, Invalid, NotFound
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import catalog
from dataflow_lite.store.db import unit_of_work
from dataflow_lite.store.models import Dataset, DatasetFile, Transfer, User, row_id, utcnow
from dataflow_lite.transfers.claims import ACTIVE, host_name

MAX_LISTED = 1000


@dataclass(frozen=True)
class TransferRow:
    """A transfer with what a person needs to recognise it."""

    transfer: Transfer
    dataset: Dataset
    file: DatasetFile | None
    user: User


@use_case("transfer.list")
def list_transfers(
    rt: Runtime,
    identity: Identity,
    *,
    dataset_id: int | None = None,
    state: str | None = None,
    kind: str | None = None,
    failed_first: bool = False,
    limit: int = MAX_LISTED,
) -> Sequence[TransferRow]:
    """Transfers the identity may see (its own; all for admins), newest first; ``kind``
    picks files (``file``) or metadata.json rewrites (``metadata``).

    ``failed_first`` puts failed ones at the top, as the admin page and the CLI show them.
    """
    authorize(identity, "transfer.list")
    if dataset_id is not None and not 0 < dataset_id <= catalog.MAX_ID:
        return []  # a dataset SQLite cannot hold has no transfers (nor may the id reach it)
    statement = (
        select(Transfer, Dataset, DatasetFile, User)
        .join(Dataset, col(Dataset.id) == Transfer.dataset_id)
        .join(User, col(User.id) == Transfer.user_id)
        .outerjoin(DatasetFile, col(DatasetFile.id) == Transfer.file_id)
    )
    if failed_first:
        statement = statement.order_by(col(Transfer.state) != FAILED)
    statement = statement.order_by(col(Transfer.id).desc()).limit(min(limit, MAX_LISTED))
    if not identity.is_admin:
        statement = statement.where(Transfer.user_id == identity.user_id)
    if dataset_id is not None:
        statement = statement.where(Transfer.dataset_id == dataset_id)
    if state is not None:
        statement = statement.where(Transfer.state == state)
    if kind is not None:
        statement = statement.where(Transfer.kind == kind)
    with unit_of_work(rt.engine, write=False) as work:
        return [TransferRow(*row) for row in work.session.exec(statement).all()]


def _visible(rt: Runtime, identity: Identity, transfer_id: int, action: str) -> Transfer:
    with unit_of_work(rt.engine, write=False) as work:
        transfer = catalog.find(work.session, Transfer, transfer_id)
    if transfer is None:
        raise NotFound(f"transfer {transfer_id} not found")
    authorize(identity, action, transfer)
    return transfer


@use_case("transfer.read")
def get_transfer(rt: Runtime, identity: Identity, transfer_id: int) -> Transfer:
    """One transfer, if it is the identity's (or the identity is an admin)."""
    return _visible(rt, identity, transfer_id, "transfer.read")


@use_case("transfer.retry")
def retry_transfer(rt: Runtime, identity: Identity, transfer_id: int) -> Transfer:
    """Queue a failed transfer again from scratch; Conflict unless it failed."""
    transfer = _visible(rt, identity, transfer_id, "transfer.retry")
    if not rt.queue.retry(transfer_id):
        raise Conflict(f"transfer {transfer_id} is {transfer.state}, not failed")
    _record(rt, identity, "transfer.retry", transfer)
    return _visible(rt, identity, transfer_id, "transfer.read")


@use_case("transfer.cancel")
def cancel_transfer(rt: Runtime, identity: Identity, transfer_id: int) -> Transfer:
    """Stop a transfer that has not ended; it fails as "cancelled" and keeps its staged file."""
    transfer = _visible(rt, identity, transfer_id, "transfer.cancel")
    if not rt.queue.cancel(transfer_id):
        raise Conflict(f"transfer {transfer_id} is {transfer.state}: it has ended")
    _record(rt, identity, "transfer.cancel", transfer)
    return _visible(rt, identity, transfer_id, "transfer.read")


@dataclass
class Adopted:
    """What :func:`adopt_transfers` did: the transfers it took, and those it could not."""

    taken: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # their staged file is not here
    running: list[int] = field(default_factory=list)  # a live worker still holds them


@use_case("transfer.adopt")
def adopt_transfers(rt: Runtime, identity: Identity, lost_host: str) -> Adopted:
    """Move to this host the transfers staged on ``lost_host``, a host that will not come back,
    that have not succeeded and whose staged file is in this host's staging folder (copied
    there from the lost host's by the admin). Queued and running ones start here at once; failed
    ones wait for a retry here."""
    authorize(identity, "transfer.adopt")
    here = host_name(rt.settings)
    if lost_host == here:
        raise Invalid(f"{lost_host} is this host", {"host": ["name another host"]})
    staging, now, adopted, starting = rt.adapters.context.staging_dir, utcnow(), Adopted(), []
    with unit_of_work(rt.engine) as work:
        waiting = work.session.exec(
            select(Transfer).where(Transfer.staged_on == lost_host, Transfer.state != DONE)
        ).all()
        for transfer in waiting:
            staged = staging / Path(transfer.staged_path or "").name
            if transfer.state in ACTIVE and (transfer.lease_until or now) > now:
                adopted.running.append(row_id(transfer))
            elif transfer.staged_path and staged.is_file():
                transfer.staged_on, transfer.staged_path = here, str(staged)
                transfer.next_attempt_at = now  # no backoff: an admin asked
                adopted.taken.append(row_id(transfer))
                if transfer.state != FAILED:
                    starting.append(row_id(transfer))
            else:
                adopted.missing.append(row_id(transfer))
        summary = {"from": lost_host, "to": here, "transfers": adopted.taken}
        audit.record(work, identity, "transfer.adopt", "host", lost_host, summary)
    for transfer_id in starting:
        rt.queue.wake(transfer_id)
    return adopted


def _record(rt: Runtime, identity: Identity, action: str, transfer: Transfer) -> None:
    # The queue changes the transfer in its own transaction; the event follows right after.
    summary = {
        "dataset_id": transfer.dataset_id,
        "state": transfer.state,
        "error": transfer.last_error,
    }
    with unit_of_work(rt.engine) as work:
        audit.record(work, identity, action, "transfer", transfer.id, summary)
