"""Taking files up (hashing them at the source), sending them over tus, resumably, and asking the
server whether it verified them at the destination: what ``push`` and ``watch`` share."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tusclient.exceptions import TusCommunicationError

from .server import AgentError, Server, Taken, Unreachable, tus_error
from .state import Receipt, State, now

READ = 1 << 20


class Changed(AgentError):
    """The file changed while it was hashed or sent: it is not complete yet."""


@dataclass(frozen=True)
class Planned:
    """A file to send, and its path inside the dataset."""

    source: Path
    target: str


def sha256_of(path: Path, progress: Callable[[int], object] = lambda n: None) -> str:
    """The file's sha256; Changed if its size or time changed meanwhile."""
    before = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(READ):
            digest.update(chunk)
            progress(len(chunk))
    after = os.stat(path)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise Changed(f"{path} changed while it was read")
    return digest.hexdigest()


def unchanged(receipt: Receipt) -> bool:
    """Whether the source file still has the size and time it had when it was hashed."""
    try:
        found = os.stat(receipt.source)
    except FileNotFoundError:
        return False
    return (found.st_size, found.st_mtime_ns) == (receipt.size, receipt.mtime_ns)


def take_up(
    state: State,
    server: Server,
    dataset_id: int,
    planned: Planned,
    progress: Callable[[int], object] = lambda n: None,
) -> Receipt:
    """The file's receipt: the one kept if the file is unchanged, else a new one (hashed now)."""
    source = str(planned.source)
    kept = state.receipt(source)
    if kept is not None and (kept.server, kept.dataset_id, kept.target) == (
        server.url,
        dataset_id,
        planned.target,
    ):
        if unchanged(kept):
            progress(kept.size)
            return kept
        if kept.uploaded_at is not None:
            raise AgentError(
                f"{source} changed after it was sent as {kept.target} to dataset "
                f"{kept.dataset_id}: not sent again (rename it to send it as a new file)"
            )
    elif kept is not None and kept.uploaded_at is not None:
        raise AgentError(
            f"{source} was already sent as {kept.target} to dataset {kept.dataset_id} "
            f"on {kept.server}"
        )
    found = os.stat(source)
    receipt = Receipt(
        source=source,
        server=server.url,
        dataset_id=dataset_id,
        target=planned.target,
        size=found.st_size,
        mtime_ns=found.st_mtime_ns,
        sha256=sha256_of(planned.source, progress),
        hashed_at=now(),
    )
    state.keep(receipt)
    return receipt


def send(state: State, server: Server, receipt: Receipt, progress: Callable[[int], object]) -> bool:
    """Send the file unless the server has it already; True if bytes were sent now.

    A kept upload URL resumes at the server's offset; only what is missing is sent.
    """
    if receipt.uploaded_at is not None:
        progress(receipt.size)
        return False
    if not unchanged(receipt):
        raise Changed(f"{receipt.source} changed after it was hashed: it is hashed again")
    uploader = server.uploader(
        receipt.source, receipt.dataset_id, receipt.target, receipt.upload_url
    )
    if uploader.url is None:
        try:
            url = server.create_upload(uploader)
        except Taken:
            _already_there(server, receipt)
            state.update(receipt.source, uploaded_at=now(), error=None)
            progress(receipt.size)
            return False
        state.update(receipt.source, upload_url=url)  # before any byte: a rerun resumes it
        uploader = server.uploader(receipt.source, receipt.dataset_id, receipt.target, url)
    sent = uploader.offset
    progress(sent)
    try:
        while uploader.offset < uploader.stop_at:
            uploader.upload_chunk()
            progress(uploader.offset - sent)
            sent = uploader.offset
    except TusCommunicationError as error:
        raise tus_error(server.url, error) from error
    state.update(receipt.source, uploaded_at=now(), error=None)
    return True


def _already_there(server: Server, receipt: Receipt) -> None:
    """Return if the dataset has this very file at the target (sent by a run cut off before it
    could note so); else say what holds the path."""
    _, files = server.files(receipt.dataset_id)
    there = files.get(receipt.target)
    if there is None:
        raise AgentError(
            f"{receipt.target} is being uploaded to dataset {receipt.dataset_id} by someone else"
        )
    if there.sha256 != receipt.sha256:
        raise AgentError(
            f"dataset {receipt.dataset_id} already has {receipt.target} with other content"
        )


@dataclass
class Outcome:
    """What a round of sending did: files sent now, files the server had, failures by file."""

    sent: int = 0
    already: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: Some file failed because the server did not answer: try again later.
    unreachable: bool = False


def send_all(
    state: State, server: Server, receipts: list[Receipt], jobs: int, quiet: bool = False
) -> Outcome:
    """Send ``receipts`` ``jobs`` at a time with a progress bar; a failure stops only its file."""
    outcome = Outcome()
    counting = threading.Lock()
    total = sum(receipt.size for receipt in receipts)
    with (
        tqdm(total=total, unit="B", unit_scale=True, desc="sending", disable=quiet or None) as bar,
        ThreadPoolExecutor(max(1, jobs)) as pool,
    ):

        def one(receipt: Receipt) -> None:
            try:
                sent = send(state, server, receipt, bar.update)
            except AgentError as error:
                state.update(receipt.source, error=str(error))
                with counting:
                    outcome.failed[receipt.source] = str(error)
                    outcome.unreachable |= isinstance(error, Unreachable)
                return
            with counting:
                if sent:
                    outcome.sent += 1
                else:
                    outcome.already += 1

        list(pool.map(one, receipts))
    return outcome


def hash_all(
    state: State,
    server: Server,
    dataset_id: int,
    planned: Iterable[Planned],
    jobs: int,
    quiet: bool = False,
) -> tuple[list[Receipt], dict[str, str]]:
    """The receipts of ``planned``, hashing the new and changed files ``jobs`` at a time."""
    planned = list(planned)
    total = sum(os.stat(item.source).st_size for item in planned)
    receipts: list[Receipt] = []
    failed: dict[str, str] = {}
    with (
        tqdm(total=total, unit="B", unit_scale=True, desc="hashing", disable=quiet or None) as bar,
        ThreadPoolExecutor(max(1, jobs)) as pool,
    ):

        def one(item: Planned) -> None:
            try:
                receipts.append(take_up(state, server, dataset_id, item, bar.update))
            except (AgentError, OSError) as error:
                failed[str(item.source)] = str(error)

        list(pool.map(one, planned))
    return sorted(receipts, key=lambda receipt: receipt.source), failed


def check_verified(state: State, server: Server) -> list[Receipt]:
    """Ask the server about every sent file not yet verified; return those still waiting.

    A file is verified when the server reports its transfer ``done`` with the sha256 the agent
    computed at the source (the server's transfers end ``done`` only once the destination's
    bytes were checked against that sha256).
    """
    waiting = state.unverified(server.url)
    by_dataset: dict[int, list[Receipt]] = {}
    for receipt in waiting:
        by_dataset.setdefault(receipt.dataset_id, []).append(receipt)
    still = []
    for dataset_id, receipts in by_dataset.items():
        destination, files = server.files(dataset_id)
        for receipt in receipts:
            there = files.get(receipt.target)
            where = f"{destination.rstrip('/')}/{receipt.target}" if destination else None
            if there is None:
                state.update(receipt.source, error="the server no longer lists this file")
            elif there.sha256 != receipt.sha256:
                state.update(receipt.source, error="the server holds other content here")
            elif there.transfer_state == "done":
                state.update(receipt.source, verified_at=now(), destination=where, error=None)
                continue
            elif there.transfer_state == "failed":
                state.update(receipt.source, destination=where, error="the transfer failed")
                continue  # waits for a person, not for the agent
            still.append(receipt)
    return still
