"""The transfer queue itself: claims, leases, takeover, cancel, retry, messages, metadata.json.

What is tested here is the queue, so the adapter is a stand-in (``QueueTestAdapter``) whose
submit the test holds and releases. Two workers are two runtimes on one instance folder, each
with its own database engine and huey instance, as two worker processes would be; the tests call
their ``run`` as huey's consumer would and count the messages waiting in huey's storage.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from dataflow_lite import bootstrap
from dataflow_lite.adapter import (
    ALREADY_ACTIVATED,
    DONE,
    FAILED,
    QUEUED,
    Activation,
    AdapterError,
    Cancelled,
    Check,
    Credentials,
    TransferAdapter,
    TransferJob,
    TransferStatus,
)
from dataflow_lite.bootstrap import Runtime
from dataflow_lite.cli.base import CLI
from dataflow_lite.services.errors import Invalid
from dataflow_lite.services.transfers import adopt_transfers, retry_transfer
from dataflow_lite.store.db import ROWS, session_scope
from dataflow_lite.store.models import Dataset, DatasetFile, Endpoint, Host, Transfer, User, utcnow
from dataflow_lite.transfers import watch
from dataflow_lite.transfers.hosts import HostNameTaken

from .conftest import catalog

#: The burst test runs a rewrite early, before the files settle: on a busy machine 1 s went by
#: first, and 3 s may too.
SETTLE_SECONDS = 10
LEASE_SECONDS = 3
SETTINGS = {
    "transfer_lease_seconds": LEASE_SECONDS,
    "transfer_progress_seconds": 1,
    "metadata_settle_seconds": SETTLE_SECONDS,
}
WAIT_SECONDS = 60  # generous: the machine may be busy; the tests assert states, not durations


@dataclass
class Controls:
    """What the stand-in adapter does, shared by its instances (the queue makes one per call)."""

    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    submits: list[PurePosixPath] = field(default_factory=list)
    cancelled: list[PurePosixPath] = field(default_factory=list)
    writes: list[PurePosixPath] = field(default_factory=list)
    #: Bytes reported while the submit waits, one call each.
    report: list[int] = field(default_factory=list)


class QueueTestAdapter(TransferAdapter):
    """A stand-in adapter for testing the queue: a submit waits until the test releases it or
    the job is cancelled, and says what it saw."""

    name = "queue-test"
    controls = Controls()

    def activation(self, credentials: Credentials | None) -> Activation:
        return Activation(ALREADY_ACTIVATED)

    def activate(self, username: str, password: str) -> Credentials | None:
        return None

    def check(self, credentials: Credentials | None) -> list[Check]:
        return []

    def submit(self, job: TransferJob) -> str:
        controls = self.controls
        controls.submits.append(job.target)
        for moved in controls.report:
            job.progress(moved)
        controls.started.set()
        deadline = time.monotonic() + WAIT_SECONDS
        while not controls.release.wait(0.05):
            if job.cancelled.is_set():
                controls.cancelled.append(job.target)
                raise Cancelled()
            if time.monotonic() > deadline:
                raise AssertionError("the test never released the submit")
        return "moved"

    def status(self, job: TransferJob, handle: str) -> TransferStatus:
        return TransferStatus(DONE, bytes_moved=job.size)

    def verify(self, job: TransferJob, handle: str) -> bool:
        return True

    def cancel(self, job: TransferJob, handle: str) -> None:
        pass

    def write_file(
        self, target: PurePosixPath, content: bytes, credentials: Credentials | None
    ) -> None:
        self.controls.writes.append(target)

    def locate(self, target: PurePosixPath) -> str:
        return str(target)


@pytest.fixture
def controls() -> Iterator[Controls]:
    QueueTestAdapter.controls = Controls()
    yield QueueTestAdapter.controls
    QueueTestAdapter.controls.release.set()  # whatever still waits ends


def worker(instance: Path, host: str = "") -> Runtime:
    """One worker (or web process) on the instance, with the stand-in adapter installed."""
    rt = bootstrap.build(instance, overrides={**SETTINGS, "host_name": host})
    rt.adapters.classes[QueueTestAdapter.name] = QueueTestAdapter
    return rt


@pytest.fixture
def workers(instance: Path, controls: Controls) -> tuple[Runtime, Runtime]:
    return worker(instance), worker(instance)


@pytest.fixture
def dataset(workers: tuple[Runtime, Runtime]) -> int:
    """A dataset on an endpoint of the stand-in adapter; no transfers yet."""
    with session_scope(workers[0].engine) as session:
        user = User(username="queue", name="Queue")
        session.add(user)
        session.add(Endpoint(id="queue-test-1", name="stand-in", adapter=QueueTestAdapter.name))
        session.flush()
        row = Dataset(
            name="run", creator_id=user.id or 0, endpoint_id="queue-test-1", folder="i/d/f"
        )
        session.add(row)
        session.flush()
        return row.id or 0


def add_file_transfer(rt: Runtime, dataset_id: int, name: str, size: int = 10) -> int:
    """A queued transfer of one (staged) file, with no message in huey yet."""
    with session_scope(rt.engine) as session:
        row = session.get(Dataset, dataset_id)
        endpoint = session.get(Endpoint, row.endpoint_id) if row else None
        assert row is not None and endpoint is not None
        content = b"x" * size
        digest = hashlib.sha256(content).hexdigest()
        file = DatasetFile(dataset_id=dataset_id, name=name, file_length=size, sha256=digest)
        session.add(file)
        session.flush()
        staged = rt.adapters.context.staging_dir / f"upload-{name}"
        staged.write_bytes(content)
        return rt.queue.add(session, row, endpoint, file, staged).id or 0


def transfer(rt: Runtime, transfer_id: int) -> Transfer:
    with session_scope(rt.engine, write=False) as session:
        found = session.get(Transfer, transfer_id)
        assert found is not None
        return found


def messages(rt: Runtime) -> list[int]:
    """The transfer ids of the run messages waiting in huey (due now or scheduled)."""
    waiting = [*rt.queue.huey.pending(), *rt.queue.huey.scheduled()]
    return sorted(message.args[0] for message in waiting if message.name == "run_transfer")


def wait_until(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def in_thread(call: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_two_workers_never_run_one_transfer_at_once(workers, dataset, controls):
    a, b = workers
    transfer_id = add_file_transfer(a, dataset, "scan.dat")

    running = in_thread(lambda: a.queue.run(transfer_id))
    wait_until(controls.started.is_set, "worker a's submit")
    b.queue.run(transfer_id)  # a second message for the same transfer: b's claim is refused

    assert len(controls.submits) == 1
    assert transfer(b, transfer_id).state == "running"
    controls.release.set()
    running.join(WAIT_SECONDS)
    assert transfer(b, transfer_id).state == DONE
    assert len(controls.submits) == 1


def test_a_message_for_a_transfer_held_or_ended_ends_with_a_read_and_no_claim(
    workers, dataset, controls, monkeypatch
):
    # The other messages of a batch's files find them held: they must not each take the write
    # lock to learn it. A claim is tried only for what may be claimable.
    a, b = workers
    held, waiting = add_file_transfer(a, dataset, "held.dat"), add_file_transfer(a, dataset, "q")
    claims: list[int] = []
    claim = b.queue._claim
    monkeypatch.setattr(b.queue, "_claim", lambda found: claims.append(found) or claim(found))

    running = in_thread(lambda: a.queue.run(held))
    wait_until(controls.started.is_set, "worker a's submit")
    b.queue.run(held)
    assert claims == [], "a live lease is seen with a read"
    controls.release.set()
    running.join(WAIT_SECONDS)
    b.queue.run(held)
    assert claims == [], "an ended transfer is seen with a read"
    assert transfer(b, held).state == DONE

    b.queue.run(waiting)
    assert claims == [waiting]
    assert transfer(b, waiting).state == DONE


def test_a_transfer_whose_worker_died_is_taken_over_when_its_lease_runs_out(
    workers, dataset, controls
):
    a, b = workers
    transfer_id = add_file_transfer(a, dataset, "scan.dat")
    [dead] = a.queue._claim(transfer_id)  # worker a claimed it, then was killed (kill -9)
    controls.release.set()

    b.queue.run(transfer_id)
    assert controls.submits == [], "a live lease is never taken over"

    wait_until(lambda: b.queue.sweep() == 1, "the lease to run out and the sweep to see it")
    b.queue.run(transfer_id)

    assert len(controls.submits) == 1
    assert transfer(b, transfer_id).state == DONE
    assert not a.queue._save(dead, state=FAILED), "the dead run's claim is void"
    assert transfer(b, transfer_id).state == DONE


@pytest.mark.parametrize("instance", ["postgresql"], indirect=True)
def test_on_postgresql_a_claim_locks_only_its_rows_and_skips_those_being_claimed(
    workers, dataset, controls
):
    a, b = workers
    first = add_file_transfer(a, dataset, "one.dat")
    second = add_file_transfer(a, dataset, "two.dat")
    # The API is writing the catalog (holding its write lock) while another worker is claiming
    # the first transfer (holding that row); a claim waiting for either would time out and raise.
    with session_scope(b.engine) as writing, session_scope(b.engine, write=ROWS) as claiming:
        writing.add(User(username="meanwhile", name="Meanwhile"))
        writing.flush()
        claiming.exec(select(Transfer).where(Transfer.id == first).with_for_update()).one()
        assert a.queue._claim(first) == []
        assert [t.id for t in a.queue._claim(second)] == [second]
    assert (transfer(a, first).state, transfer(a, second).state) == (QUEUED, "running")


def test_a_file_transfer_runs_only_on_the_host_that_staged_it(instance, dataset, controls):
    # Two hosts on one catalog (here one instance folder, so one staging folder: what differs is
    # their name); each host's staging folder is its own, so only the staging host may run it.
    here, there = worker(instance, "host-a"), worker(instance, "host-b")
    transfer_id = add_file_transfer(here, dataset, "scan.dat")
    assert transfer(here, transfer_id).staged_on == "host-a"
    controls.release.set()
    assert there.queue.sweep() == 0 and there.queue._claim(transfer_id) == []
    there.queue.run(transfer_id)
    assert controls.submits == [] and transfer(there, transfer_id).state == QUEUED
    assert here.queue.sweep() == 1
    here.queue.run(transfer_id)
    assert len(controls.submits) == 1 and transfer(here, transfer_id).state == DONE


@pytest.mark.parametrize("instance", ["postgresql"], indirect=True)
def test_on_postgresql_a_message_that_reached_the_wrong_host_is_passed_on_to_the_right_one(
    instance, dataset, controls, monkeypatch, request
):
    here, there = worker(instance, "host-a"), worker(instance, "host-b")
    listening, sweep = threading.Event(), there.queue.sweep
    monkeypatch.setattr(there.queue, "sweep", lambda: (sweep(), listening.set()))
    request.addfinalizer(there.queue.listen().set)  # as host-b's worker process does
    wait_until(listening.is_set, "host-b to listen (it sweeps once it does)")
    transfer_id = add_file_transfer(there, dataset, "scan.dat")  # staged on host-b
    assert messages(there) == []
    here.queue.run(transfer_id)  # a retry asked of host-a, say: host-a may not run it
    assert controls.submits == []
    # The two hosts share one huey file here: the message there is host-b's listener's.
    assert wait_until(lambda: messages(there), "host-b's message") == [transfer_id]
    controls.release.set()
    there.queue.run(transfer_id)
    assert len(controls.submits) == 1 and transfer(there, transfer_id).state == DONE


def test_a_second_instance_folder_may_not_take_the_name_of_a_live_host(instance, dataset):
    first, twin = worker(instance, "host-a"), worker(instance, "host-a")
    twin.queue.place = "elsewhere:/srv/another-instance"
    first.queue.sweep()  # host-a checks in
    with pytest.raises(HostNameTaken, match=r"host_name 'host-a' is taken: .*:.* checked in under"):
        twin.queue.sweep()
    first.queue.sweep()  # the live host goes on
    lose(first, "host-a")
    twin.queue.sweep()  # a lost host's name may be taken
    with pytest.raises(HostNameTaken, match="elsewhere:/srv/another-instance checked in"):
        first.queue.sweep()


def test_the_transfers_waiting_for_a_lost_host_say_so_until_it_checks_in_again(
    instance, dataset, controls
):
    lost, here = worker(instance, "host-a"), worker(instance, "host-b")
    lost.queue.sweep()
    transfer_id = add_file_transfer(lost, dataset, "scan.dat")
    here.queue.sweep()
    assert transfer(here, transfer_id).last_error is None, "host-a was seen a moment ago"
    seen = lose(here, "host-a")
    here.queue.sweep()
    assert transfer(here, transfer_id).last_error == (
        f"waiting for host host-a, not seen since {seen:%Y-%m-%d %H:%M} UTC: if it will not come "
        "back, copy its staging folder's files to another host and run "
        "'dataflow-lite transfers adopt host-a' there"
    )
    assert transfer(here, transfer_id).state == QUEUED
    lost.queue.sweep()  # it is back
    assert transfer(here, transfer_id).last_error is None
    controls.release.set()
    lost.queue.run(transfer_id)
    assert transfer(here, transfer_id).state == DONE


def lose(rt: Runtime, name: str) -> datetime:
    """Make host ``name`` last seen just over ``host_lost_seconds`` ago; when that was."""
    with catalog(rt.instance) as session:
        host = session.get(Host, name)
        assert host is not None
        host.seen_at = utcnow() - timedelta(seconds=rt.settings["host_lost_seconds"] + 1)
        return host.seen_at


def test_an_admin_moves_a_lost_hosts_transfers_to_a_host_that_holds_their_files(
    instance, dataset, controls
):
    lost, here = worker(instance, "host-a"), worker(instance, "host-b")
    copied = add_file_transfer(lost, dataset, "scan.dat")
    not_copied = add_file_transfer(lost, dataset, "other.dat")
    (here.adapters.context.staging_dir / "upload-other.dat").unlink()
    with pytest.raises(Invalid, match="host-b is this host"):
        adopt_transfers(here, CLI, "host-b")

    adopted = adopt_transfers(here, CLI, "host-a")
    assert (adopted.taken, adopted.missing, adopted.running) == ([copied], [not_copied], [])
    assert transfer(here, not_copied).staged_on == "host-a"  # left for its host
    controls.release.set()
    assert here.queue.sweep() == 0, "the adopted transfer's message is already waiting"
    here.queue.run(copied)
    assert len(controls.submits) == 1 and transfer(here, copied).state == DONE


def test_a_run_that_stalled_past_its_lease_stops_when_another_worker_takes_over(
    workers, dataset, controls
):
    a, b = workers
    transfer_id = add_file_transfer(a, dataset, "scan.dat")
    # Worker a stalls: its watch cannot renew the lease (the database is locked for it)...
    stalled, save = threading.Event(), a.queue._save_each
    stalled.set()

    def save_unless_stalled(batch: list[Transfer], values: dict[int, dict[str, Any]]) -> set[int]:
        if stalled.is_set() and any("lease_until" in each for each in values.values()):
            raise OperationalError("UPDATE transfer", {}, Exception("database is locked"))
        return save(batch, values)

    a.queue._save_each = save_unless_stalled  # type: ignore[method-assign]
    running = in_thread(lambda: a.queue.run(transfer_id))
    wait_until(controls.started.is_set, "worker a's submit")

    wait_until(lambda: b.queue._claim(transfer_id), "worker b to take the transfer over")
    stalled.clear()  # ...until it can write again, and finds its claim void

    running.join(WAIT_SECONDS)
    assert not running.is_alive()
    assert controls.cancelled == [PurePosixPath("i/d/f/scan.dat")], "a's adapter was stopped"


def test_cancel_stops_the_running_adapter_and_a_retry_right_after_runs_it_again(
    workers, dataset, controls
):
    worker_a, web = workers
    transfer_id = add_file_transfer(worker_a, dataset, "scan.dat")
    running = in_thread(lambda: worker_a.queue.run(transfer_id))
    wait_until(controls.started.is_set, "the submit")

    assert web.queue.cancel(transfer_id)
    cancelled = transfer(web, transfer_id)
    assert (cancelled.state, cancelled.last_error) == (FAILED, "cancelled")
    # Retried at once, while the cancelled run may still be stopping: no 409.
    retried = retry_transfer(web, CLI, transfer_id)
    assert retried.state == QUEUED

    running.join(WAIT_SECONDS)
    assert not running.is_alive(), "the cancelled submit stopped"
    assert controls.cancelled == [PurePosixPath("i/d/f/scan.dat")]
    # The stopped run released its lease and woke the transfer: one message, for it.
    assert messages(worker_a) == [transfer_id]

    controls.release.set()
    web.queue.run(transfer_id)
    assert transfer(web, transfer_id).state == DONE
    assert len(controls.submits) == 2


def test_a_sweep_adds_no_message_for_a_transfer_that_has_one(workers, dataset, controls):
    a, _ = workers
    backlog = [add_file_transfer(a, dataset, f"f{n}.dat") for n in range(5)]
    for transfer_id in backlog:
        a.queue.wake(transfer_id)
    assert messages(a) == backlog

    for _sweep in range(3):
        assert a.queue.sweep() == 0
    assert messages(a) == backlog

    forgotten = add_file_transfer(a, dataset, "no-message.dat")  # e.g. its message was lost
    assert a.queue.sweep() == 1
    assert a.queue.sweep() == 0
    assert messages(a) == [*backlog, forgotten]


def test_metadata_json_is_written_once_after_a_burst_of_files_settles(workers, dataset, controls):
    a, b = workers
    controls.release.set()
    burst = [add_file_transfer(a, dataset, f"f{n}.dat") for n in range(6)]
    for n, transfer_id in enumerate(burst):
        (a if n % 2 else b).queue.run(transfer_id)
    assert all(transfer(a, t).state == DONE for t in burst)
    assert controls.writes == [], "nothing is written while files keep finishing"

    with session_scope(a.engine, write=False) as session:
        rewrites = session.exec(select(Transfer).where(Transfer.kind == "metadata")).all()
    assert len(rewrites) == 1
    [rewrite] = rewrites
    assert rewrite.id is not None
    assert messages(a).count(rewrite.id) == 1

    a.queue.run(rewrite.id)  # a message that arrives early waits again
    assert controls.writes == []
    wait_until(lambda: a.queue.run(rewrite.id) or controls.writes, "the settled rewrite")
    assert controls.writes == [PurePosixPath("i/d/f/metadata.json")]
    assert transfer(a, rewrite.id).state == DONE


def test_bytes_moved_is_stored_while_the_adapter_runs_without_a_write_per_report(
    workers, dataset, controls
):
    a, _ = workers
    size = 2000
    transfer_id = add_file_transfer(a, dataset, "big.dat", size=size)
    controls.report = list(range(1, 1001))  # a thousand chunks reported at once
    updates: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE transfer") and "bytes_moved" in statement:
            updates.append(statement)

    event.listen(a.engine, "before_cursor_execute", count)
    running = in_thread(lambda: a.queue.run(transfer_id))
    wait_until(lambda: transfer(a, transfer_id).bytes_moved == 1000, "bytes_moved to be stored")
    assert transfer(a, transfer_id).state == "running"
    assert len(updates) == 1
    controls.release.set()
    running.join(WAIT_SECONDS)
    assert transfer(a, transfer_id).bytes_moved == size


def test_a_cancelled_local_copy_stops_between_chunks_and_leaves_no_partial_file(
    instance, tmp_path, monkeypatch, controls
):
    archive = tmp_path / "archive"
    archive.mkdir()
    worker_a, web = worker(instance), worker(instance)
    with session_scope(web.engine) as session:
        user = User(username="copier")
        session.add(user)
        session.add(
            Endpoint(id="archive", name="archive", adapter="local", options={"path": str(archive)})
        )
        session.flush()
        row = Dataset(name="big", creator_id=user.id or 0, endpoint_id="archive", folder="i/d/f")
        session.add(row)
        session.flush()
        dataset_id = row.id or 0
    transfer_id = add_file_transfer(web, dataset_id, "big.raw", size=64 << 20)
    link = os.link

    def across_filesystems(source: Any, target: Any, **at: Any) -> None:
        if Path(source).name.startswith("upload-"):  # the staged file: as if on another disk
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        link(source, target, **at)

    def slowly(progress: watch.Progress, moved: int) -> None:
        # A slow disk: 1 MiB every 250 ms, 64 MiB in 16 s at the very least; the cancel below
        # stops it within a few seconds, on a busy machine too.
        time.sleep(0.25)
        progress.moved = moved

    monkeypatch.setattr(os, "link", across_filesystems)
    monkeypatch.setattr(watch.Progress, "report", slowly)
    running = in_thread(lambda: worker_a.queue.run(transfer_id))
    wait_until(lambda: transfer(web, transfer_id).bytes_moved >= 2 << 20, "2 MiB to be copied")
    assert transfer(web, transfer_id).state == "running", "bytes_moved moves while it copies"

    assert web.queue.cancel(transfer_id)
    running.join(WAIT_SECONDS)

    assert not running.is_alive()
    folder = archive / "i" / "d" / "f"
    assert sorted(os.listdir(folder)) == [".dataflow-lite"], "no temporary, no target"
    assert transfer(web, transfer_id).last_error == "cancelled"
    monkeypatch.setattr(watch.Progress, "report", lambda progress, moved: None)
    assert web.queue.retry(transfer_id)
    worker_a.queue.run(transfer_id)
    assert transfer(web, transfer_id).state == DONE
    assert (folder / "big.raw").stat().st_size == 64 << 20


class BatchingTestAdapter(QueueTestAdapter):
    """A stand-in adapter that takes batches: each submit_batch call is noted; a file named
    ``refused*`` fails alone."""

    name = "batching-test"
    batches = True
    batches_seen: list[list[str]] = []

    def submit_batch(self, jobs: list[TransferJob]) -> list[str | AdapterError]:
        self.batches_seen.append([job.target.name for job in jobs])
        handles = super().submit_batch(jobs)  # each job waits for the release, as one file does
        return [
            AdapterError(f"{job.target.name}: permission denied", permanent=True)
            if job.target.name.startswith("refused")
            else handle
            for job, handle in zip(jobs, handles, strict=True)
        ]


@pytest.fixture
def batching(workers: tuple[Runtime, Runtime]) -> int:
    """A dataset on an endpoint of the batching stand-in adapter."""
    BatchingTestAdapter.batches_seen = []
    for rt in workers:
        rt.adapters.classes[BatchingTestAdapter.name] = BatchingTestAdapter
    with session_scope(workers[0].engine) as session:
        user = User(username="batch", name="Batch")
        session.add(user)
        session.add(Endpoint(id="batching-1", name="batches", adapter=BatchingTestAdapter.name))
        session.flush()
        row = Dataset(name="run", creator_id=user.id or 0, endpoint_id="batching-1", folder="b/d/f")
        session.add(row)
        session.flush()
        return row.id or 0


def test_the_waiting_files_of_a_dataset_go_as_one_batch_and_fail_per_file(
    workers, batching, controls
):
    a, b = workers
    controls.release.set()
    names = ["f0.dat", "f1.dat", "refused.dat", "f3.dat"]
    ids = [add_file_transfer(a, batching, name) for name in names]
    a.queue.run(ids[0])
    for transfer_id in ids[1:]:
        b.queue.run(transfer_id)  # their messages find them taken into the batch: no-ops

    assert BatchingTestAdapter.batches_seen == [names]
    states = {name: transfer(a, t) for name, t in zip(names, ids, strict=True)}
    assert [states[n].state for n in names] == [DONE, DONE, FAILED, DONE]
    assert states["refused.dat"].last_error == "refused.dat: permission denied"
    assert states["refused.dat"].permanent
    assert all(states[n].bytes_moved == 10 and states[n].staged_path is None for n in names[:2])
    assert transfer(a, ids[2]).staged_path is not None, "a failed file keeps its staged copy"


def test_a_batch_is_bounded_by_its_settings(workers, batching, controls, instance):
    controls.release.set()
    rt = bootstrap.build(
        instance, overrides={**SETTINGS, "transfer_batch_files": 3, "transfer_batch_bytes": 25}
    )
    rt.adapters.classes[BatchingTestAdapter.name] = BatchingTestAdapter
    ids = [add_file_transfer(rt, batching, f"f{n}.dat") for n in range(5)]
    big = add_file_transfer(rt, batching, "big.dat", size=100)
    for transfer_id in [big, *ids]:
        rt.queue.run(transfer_id)

    # 10-byte files, at most 25 bytes a batch; a file larger than that goes alone.
    assert BatchingTestAdapter.batches_seen == [
        ["big.dat"],
        ["f0.dat", "f1.dat"],
        ["f2.dat", "f3.dat"],
        ["f4.dat"],
    ]
    assert all(transfer(rt, t).state == DONE for t in [*ids, big])


def test_a_file_cancelled_in_a_running_batch_fails_alone(workers, batching, controls):
    a, web = workers
    ids = [add_file_transfer(a, batching, f"f{n}.dat") for n in range(3)]
    running = in_thread(lambda: a.queue.run(ids[0]))
    wait_until(controls.started.is_set, "the batch's submit")

    assert web.queue.cancel(ids[1])
    wait_until(lambda: transfer(a, ids[1]).state == FAILED, "the cancel")
    controls.release.set()
    running.join(WAIT_SECONDS)

    assert not running.is_alive()
    assert [transfer(a, t).state for t in ids] == [DONE, FAILED, DONE]
    assert transfer(a, ids[1]).last_error == "cancelled"
