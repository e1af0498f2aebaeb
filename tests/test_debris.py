"""Nothing left behind by a crash: kill -9 of web workers, transfer workers and serve itself."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import dataflow_lite_local
import pytest
import requests
from dataflow_lite_local import LocalAdapter

from dataflow_lite.adapter import AdapterContext, TransferJob

from .conftest import free_port, start_server, stop_server, wait_for_transfers
from .test_uploads import create_dataset, multipart, raw_post, read_response

STALE_TEMPORARY = ".scan.bin.abc123_z.part"  # as the local adapter names a copy's temporary


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc), zombies left out."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while we looked
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def holder_of(path: Path, pids: set[int]) -> int:
    """The one process among ``pids`` that has ``path`` open."""
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no process has {path} open")


def wait_for(condition, seconds: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {seconds} s")


def staged_parts(instance: Path) -> list[Path]:
    return sorted((instance / "staging").glob("upload-*.part"))


@contextmanager
def transfer_worker(instance: Path, log: Path) -> Iterator[subprocess.Popen]:
    """``dataflow-lite worker`` on its own, once it has swept and is ready."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), "worker"],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "transfer(s) due" in log.read_text(), 60, "the worker's start")
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


HALF_UPLOAD = 3 << 19  # 1.5 MiB: the server reads the body 1 MiB at a time


def slow_upload(api: str, key: str, dataset_id: int, name: str) -> tuple[socket.socket, bytes]:
    """Start an upload that stops halfway, its connection left open; the socket and the rest."""
    head, tail, content_type = multipart(dataset_id, name, b"")
    connection = raw_post(
        api + "/dataset-file-upload",
        key,
        content_type,
        [head, b"x" * HALF_UPLOAD],
        0.1,
        len(head) + 2 * HALF_UPLOAD + len(tail),
    )
    return connection, b"x" * HALF_UPLOAD + tail


@pytest.mark.server
def test_a_web_worker_killed_mid_upload_leaves_no_staged_file_after_a_restart(
    cli, instance: Path, tmp_path: Path
):
    server = start_server(instance, tmp_path / "first.log")
    try:
        key = cli.user_key("suhas")
        dataset = create_dataset(server.api, key, "cut off")
        connection, _ = slow_upload(server.api, key, dataset["id"], "cut.bin")
        part = wait_for(lambda: staged_parts(instance), what="the staged file")[0]
        worker = holder_of(part, descendants(server.process.pid))
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not alive(worker), what="the web worker's end")
        connection.close()
    finally:
        stop_server(server)
    assert staged_parts(instance) == [part], "the killed worker's staged file is debris now"

    server = start_server(instance, tmp_path / "second.log")
    try:
        wait_for(lambda: "transfer(s) due" in server.log.read_text(), 60, "the worker's start")
    finally:
        stop_server(server)
    assert staged_parts(instance) == []
    lines = [line for line in server.log.read_text().splitlines() if str(part) in line]
    assert len(lines) == 1 and "removed" in lines[0], server.log.read_text()


@pytest.mark.server
def test_a_starting_worker_removes_only_what_no_live_transfer_or_upload_holds(
    cli, instance: Path, tmp_path: Path
):
    """A stale destination temporary and a stale staged file go; a queued transfer's staged
    file, an upload still arriving, resume state and the catalog's own files stay."""
    server = start_server(instance, tmp_path / "server.log", "--no-transfer-worker")
    try:
        key = cli.user_key("suhas")
        headers = {"Authorization": f"Bearer {key}"}
        dataset = create_dataset(server.api, key, "scan")
        content = b"measured " * 10_000
        queued = requests.post(
            server.api + "/dataset-file-upload",
            files={"file": ("scan.bin", content)},
            data={"dataset_id": str(dataset["id"])},
            headers=headers,
        )
        assert queued.status_code == 201, queued.text
        [waiting] = staged_parts(instance)  # no worker yet: its transfer is queued

        folder = Path(queued.json()["destination"]).parent
        root = instance / "dataflow"  # the default endpoint, which makes and marks this folder
        local = LocalAdapter({"path": str(root)}, AdapterContext(instance, instance / "staging"))
        with local.tree.folder(PurePosixPath(folder.relative_to(root)), create=True):
            pass
        (folder / STALE_TEMPORARY).write_bytes(b"half a copy")
        (folder / ".notes").write_text("someone's hidden file")
        (folder / ".rsync-partial").mkdir()
        (folder / ".rsync-partial" / "scan.bin").write_bytes(b"resume state")
        elsewhere = instance / "dataflow" / "not-a-dataset"
        elsewhere.mkdir()
        (elsewhere / STALE_TEMPORARY).write_bytes(b"not in a dataset folder")
        stale_staged = instance / "staging" / "upload-0stale0.part"
        stale_staged.write_bytes(b"a web worker died writing this")

        connection, rest = slow_upload(server.api, key, dataset["id"], "arriving.bin")
        arriving = wait_for(
            lambda: [p for p in staged_parts(instance) if p not in (waiting, stale_staged)],
            what="the arriving upload's staged file",
        )[0]

        with transfer_worker(instance, tmp_path / "worker.log") as worker:
            connection.sendall(rest)  # the upload goes on, and lands
            status, body = read_response(connection)
            assert status == 201, body
            transfers = wait_for_transfers(server.api, key, dataset["id"])
        log = (tmp_path / "worker.log").read_text()
        assert worker.returncode is not None
    finally:
        stop_server(server)

    assert {t["state"] for t in transfers} == {"done"}, transfers
    assert Path(queued.json()["destination"]).read_bytes() == content
    assert Path(body["destination"]).read_bytes() == b"x" * 2 * HALF_UPLOAD
    assert not stale_staged.exists() and not (folder / STALE_TEMPORARY).exists()
    assert (folder / ".notes").exists() and (folder / ".rsync-partial" / "scan.bin").exists()
    assert (elsewhere / STALE_TEMPORARY).exists()
    removed = [line for line in log.splitlines() if "removed" in line]
    assert len(removed) == 2, log
    assert str(stale_staged) in removed[0] and str(folder / STALE_TEMPORARY) in removed[1]
    assert str(waiting) not in log and str(arriving) not in log


def test_the_local_adapter_removes_only_its_own_unlocked_temporaries(tmp_path: Path):
    root = tmp_path / "destination"
    folder = root / "instrument" / "2026-01-01" / "120000_scan"
    (folder / "raw").mkdir(parents=True)
    adapter = LocalAdapter({"path": str(root)}, AdapterContext(tmp_path, tmp_path / "staging"))
    stale = folder / STALE_TEMPORARY
    in_subfolder = folder / "raw" / ".frame.tif.0a1b2c3d.part"
    copying = folder / ".live.bin.zzzzzzzz.part"
    catalogued = folder / ".kept.bin.abcdefgh.part"  # a user's file, named like a temporary
    for path in (stale, in_subfolder, copying, catalogued):
        path.write_bytes(b"bytes")
    (folder / "metadata.json").write_text("{}")
    linked = tmp_path / "outside"
    linked.mkdir()
    (linked / STALE_TEMPORARY).write_bytes(b"not under the root")
    (root / "instrument" / "2026-01-02").symlink_to(linked)

    with open(copying, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a copy still running in another worker
        removed = adapter.remove_debris(
            {
                PurePosixPath("instrument/2026-01-01/120000_scan"): {
                    "metadata.json",
                    catalogued.name,
                },
                PurePosixPath("instrument/2026-01-01/120000_scan/raw"): set(),
                PurePosixPath("instrument/2026-01-02"): set(),
                PurePosixPath("instrument/never-made"): set(),
            }
        )
    assert sorted(removed) == sorted(
        f"removed {path}: a write cut off before it landed" for path in (stale, in_subfolder)
    )
    assert copying.exists() and catalogued.exists() and (folder / "metadata.json").exists()
    assert (linked / STALE_TEMPORARY).exists()


def test_a_cross_filesystem_copy_holds_its_temporary_locked(tmp_path: Path, monkeypatch):
    """While the copy runs a sweep leaves the temporary alone; afterwards nothing is left."""
    root = tmp_path / "destination"
    root.mkdir()
    staged = tmp_path / "upload-x.part"
    staged.write_bytes(b"data" * 1000)
    adapter = LocalAdapter({"path": str(root)}, AdapterContext(tmp_path, tmp_path))
    during: list[list[str]] = []
    copy, link = dataflow_lite_local._copy_into, os.link

    def copy_and_sweep(job: TransferJob, fd: int, where: Path) -> None:
        copy(job, fd, where)
        during.append(adapter.remove_debris({PurePosixPath("d"): set()}))
        during.append([p.name for p in where.parent.iterdir()])

    def link_across_filesystems(source: Path | str, target: Path | str, **at: int) -> None:
        if Path(source) == staged:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        link(source, target, **at)

    monkeypatch.setattr(dataflow_lite_local, "_copy_into", copy_and_sweep)
    monkeypatch.setattr(dataflow_lite_local.os, "link", link_across_filesystems)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    job = TransferJob(staged, PurePosixPath("d/f.bin"), digest, 4000, None)
    assert adapter.submit(job) == "copy"
    assert during[0] == [] and len(during[1]) == 1 and during[1][0].startswith(".f.bin.")
    assert sorted(p.name for p in (root / "d").iterdir()) == ["f.bin"]


@pytest.mark.server
def test_kill_9_of_serve_ends_gunicorn_and_the_worker_and_frees_the_port(
    instance: Path, tmp_path: Path
):
    port = free_port()
    server = start_server(instance, tmp_path / "server.log", port=port)
    try:
        wait_for(lambda: "transfer(s) due" in server.log.read_text(), 60, "the worker's start")
        children = descendants(server.process.pid)
        assert len(children) >= 4  # gunicorn, its two workers, the transfer worker
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        wait_for(lambda: not any(alive(pid) for pid in children), 60, "the children's end")
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            probe.bind(("127.0.0.1", port))
            probe.listen()
    finally:
        try:
            os.killpg(server.process.pid, signal.SIGKILL)  # whatever was left behind
        except ProcessLookupError:
            pass
