"""Taking files up (hashing them at the source), sending them over tus, resumably, and asking the
server whether it verified them at the destination: what ``push`` and ``watch`` share."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .bundles import Body, Limits, bundles
from .hashing import Changed, HashingReader, sha256_of
from .server import AgentError, Server, Taken, Unreachable, tus_error
from .state import Receipt, State, now


class Bar(Protocol):
    """A progress bar: tqdm's, or one that shows nothing."""

    def update(self, n: float | None = 1) -> bool | None: ...


class _NoBar:
    def update(self, n: float | None = 1) -> None:
        pass


def progress_bar(quiet: bool, **options: Any) -> AbstractContextManager[Bar]:
    """A tqdm bar (shown on a terminal), or with ``quiet`` one that shows nothing: tqdm is not
    even imported then (a tenth of a second of a short run's start)."""
    if quiet:
        return nullcontext(_NoBar())
    from tqdm import tqdm

    return tqdm(disable=None, **options)


@dataclass(frozen=True)
class Planned:
    """A file to send, and its path inside the dataset."""

    source: Path
    target: str


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
    fresh: list[Receipt] | None = None,
    defer_over: int | None = None,
) -> Receipt:
    """The file's receipt: the one kept if the file is unchanged, else a new one (hashed now,
    unless it is larger than ``defer_over``: such a file goes over tus and is hashed as it is
    sent, its sha256 "" until then).

    A new receipt is recorded at once, or, given ``fresh``, added to it for the caller to
    record with the others (``State.keep_many``) before any of them is sent.
    """
    source = str(planned.source)
    kept = state.receipt(source)
    if kept is not None and (kept.server, kept.dataset_id, kept.target) == (
        server.url,
        dataset_id,
        planned.target,
    ):
        if unchanged(kept):
            counted = defer_over is None or kept.size <= defer_over  # in the bar's total
            if not kept.sha256 and counted:
                # Left to a tus send that did not end, it now goes in a bundle, whose
                # manifest needs its hash first.
                kept.sha256 = sha256_of(planned.source, progress)
                state.update(source, sha256=kept.sha256)
            elif counted:
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
    deferred = defer_over is not None and found.st_size > defer_over
    receipt = Receipt(
        source=source,
        server=server.url,
        dataset_id=dataset_id,
        target=planned.target,
        size=found.st_size,
        mtime_ns=found.st_mtime_ns,
        sha256="" if deferred else sha256_of(planned.source, progress),
        hashed_at=now(),
    )
    if fresh is None:
        state.keep(receipt)
    else:
        fresh.append(receipt)
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
    reader = HashingReader(receipt.source, hashing=not receipt.sha256)
    try:
        sent_now = _send(state, server, receipt, reader, progress)
    finally:
        reader.close()
    return sent_now


def _send(
    state: State,
    server: Server,
    receipt: Receipt,
    reader: HashingReader,
    progress: Callable[[int], object],
) -> bool:
    from tusclient.exceptions import TusCommunicationError

    uploader = server.uploader(
        receipt.source, receipt.dataset_id, receipt.target, receipt.upload_url, reader
    )
    if uploader.url is None:
        try:
            url = server.create_upload(uploader)
        except Taken:
            _already_there(server, _hashed(state, receipt, None))
            state.update(receipt.source, uploaded_at=now(), error=None)
            progress(receipt.size)
            return False
        state.update(receipt.source, upload_url=url)  # before any byte: a rerun resumes it
        uploader = server.uploader(receipt.source, receipt.dataset_id, receipt.target, url, reader)
    sent = uploader.offset
    progress(sent)
    try:
        while uploader.offset < uploader.stop_at:
            uploader.upload_chunk()
            progress(uploader.offset - sent)
            sent = uploader.offset
    except TusCommunicationError as error:
        raise tus_error(server.url, error) from error
    _hashed(state, receipt, reader.sha256(receipt.size))
    state.update(receipt.source, uploaded_at=now(), error=None)
    return True


def _hashed(state: State, receipt: Receipt, sha256: str | None) -> Receipt:
    """The receipt with its sha256: kept, found while sending (``sha256``), or hashed now (an
    upload resumed from an earlier run); Changed if the file changed meanwhile."""
    if receipt.sha256:
        return receipt
    receipt.sha256 = sha256 or sha256_of(Path(receipt.source))
    if not unchanged(receipt):
        raise Changed(f"{receipt.source} changed while it was sent: it is hashed again")
    state.update(receipt.source, sha256=receipt.sha256)
    return receipt


def send_bundle(
    state: State, server: Server, receipts: list[Receipt], progress: Callable[[int], object]
) -> tuple[list[Receipt], list[Receipt], list[Receipt], dict[str, str]]:
    """Send ``receipts`` (small files of one dataset) in one request: the files sent now, those
    the server had already, those to send one by one instead, and failures by source.

    The server takes all or none. When it answers 409 (a path is taken), the files it lists
    with the same sha256 were sent by a run cut off before it noted so; the others go one by
    one over tus, which also resumes this user's own unfinished upload of a path.
    """
    failed: dict[str, str] = {}
    waiting = [r for r in receipts if r.uploaded_at is None]
    already = [r for r in receipts if r.uploaded_at is not None]
    progress(sum(r.size for r in already))
    for receipt in list(waiting):
        if not unchanged(receipt):
            failed[receipt.source] = f"{receipt.source} changed after it was hashed"
            waiting.remove(receipt)
    if not waiting:
        return [], already, [], failed
    dataset_id = waiting[0].dataset_id
    try:
        status, _ = server.send_bundle(Body(dataset_id, waiting, progress))
    except OSError as error:  # a file changed while it was read into the body
        raise Changed(str(error)) from error
    if status == 201:
        state.update_many([r.source for r in waiting], uploaded_at=now(), error=None)
        return waiting, already, [], failed
    _, files = server.files(dataset_id)
    alone, there = [], []
    for receipt in waiting:
        found = files.get(receipt.target)
        if found is None:
            alone.append(receipt)
        elif found.sha256 == receipt.sha256:
            there.append(receipt)
        else:
            failed[receipt.source] = (
                f"dataset {dataset_id} already has {receipt.target} with other content"
            )
    state.update_many([r.source for r in there], uploaded_at=now(), error=None)
    return [], already + there, alone, failed


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
    state: State,
    server: Server,
    receipts: list[Receipt],
    jobs: int,
    quiet: bool = False,
    limits: Limits | None = None,
) -> Outcome:
    """Send ``receipts`` ``jobs`` at a time with a progress bar; a failure stops only its file.

    Files up to ``limits.file_bytes`` go several to a request (``send_bundle``), the others
    one by one over tus.
    """
    outcome = Outcome()
    counting = threading.Lock()
    total = sum(receipt.size for receipt in receipts)
    with (
        progress_bar(quiet, total=total, unit="B", unit_scale=True, desc="sending") as bar,
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

        def several(group: list[Receipt]) -> None:
            try:
                sent, already, alone, failed = send_bundle(state, server, group, bar.update)
            except AgentError as error:
                state.update_many([receipt.source for receipt in group], error=str(error))
                with counting:
                    outcome.failed.update({receipt.source: str(error) for receipt in group})
                    outcome.unreachable |= isinstance(error, Unreachable)
                return
            for source, message in failed.items():
                state.update(source, error=message)
            with counting:
                outcome.sent += len(sent)
                outcome.already += len(already)
                outcome.failed.update(failed)
            for receipt in alone:
                one(receipt)

        groups, alone = bundles(receipts, limits or Limits(file_bytes=-1))
        work = [pool.submit(several, group) for group in groups]
        work += [pool.submit(one, receipt) for receipt in alone]
        for done in work:
            done.result()
    return outcome


def hash_all(
    state: State,
    server: Server,
    dataset_id: int,
    planned: Iterable[Planned],
    jobs: int,
    quiet: bool = False,
    defer_over: int | None = None,
) -> tuple[list[Receipt], dict[str, str]]:
    """The receipts of ``planned``, hashing the new and changed files ``jobs`` at a time;
    those larger than ``defer_over`` are hashed as they are sent instead (see ``take_up``)."""
    planned = list(planned)
    sizes = [os.stat(item.source).st_size for item in planned]
    total = sum(size for size in sizes if defer_over is None or size <= defer_over)
    receipts: list[Receipt] = []
    fresh: list[Receipt] = []
    failed: dict[str, str] = {}
    with (
        progress_bar(quiet, total=total, unit="B", unit_scale=True, desc="hashing") as bar,
        ThreadPoolExecutor(max(1, jobs)) as pool,
    ):

        def one(item: Planned) -> None:
            try:
                receipts.append(
                    take_up(state, server, dataset_id, item, bar.update, fresh, defer_over)
                )
            except (AgentError, OSError) as error:
                failed[str(item.source)] = str(error)

        list(pool.map(one, planned))
    # One commit for the new receipts, not one each (a journal sync each: about a second for
    # 300 files on ext4); they are recorded before any of them is sent.
    state.keep_many(fresh)
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
        changes: dict[str, dict[str, object]] = {}
        for receipt in receipts:
            there = files.get(receipt.target)
            where = f"{destination.rstrip('/')}/{receipt.target}" if destination else None
            if there is None:
                changes[receipt.source] = {"error": "the server no longer lists this file"}
            elif there.sha256 != receipt.sha256:
                changes[receipt.source] = {"error": "the server holds other content here"}
            elif there.transfer_state == "done":
                changes[receipt.source] = {
                    "verified_at": now(), "destination": where, "error": None
                }  # fmt: skip
                continue
            elif there.transfer_state == "failed":
                if (receipt.destination, receipt.error) != (where, "the transfer failed"):
                    changes[receipt.source] = {
                        "destination": where, "error": "the transfer failed"
                    }  # fmt: skip
                continue  # waits for a person, not for the agent
            still.append(receipt)
        # One commit for the dataset's answers (the last look finds them all done at once).
        state.update_each(changes)
    return still
