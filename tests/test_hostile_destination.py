"""A destination others can write in: planted links are refused, folders are never taken over."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import dataflow_lite_local
import pytest
from dataflow_lite_local import LocalAdapter, safe_paths
from dataflow_lite_local.safe_paths import MARKING

from dataflow_lite.adapter import AdapterContext, AdapterError, TransferJob, being_written
from dataflow_lite.store.layout import FOLDER_MARKER, UnsafePath, check_file_name

FOLDER = PurePosixPath("microscope/2026-12-01/101500_scan")
TARGET = FOLDER / "raw" / "scan.dat"
METADATA = FOLDER / "metadata.json"
CONTENT = b"measurement"
PRECIOUS = b"ssh-ed25519 AAAA... the neighbour's key"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "share"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Where a neighbour's links point: nothing of the dataset may land here."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "authorized_keys").write_bytes(PRECIOUS)
    return path


@pytest.fixture
def adapter(tmp_path: Path, root: Path) -> LocalAdapter:
    instance = tmp_path / "instance"
    instance.mkdir()
    context = AdapterContext(instance_path=instance, staging_dir=tmp_path / "staging")
    return LocalAdapter(LocalAdapter.check_options({"path": str(root)}), context)


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    path = tmp_path / "staged.dat"
    path.write_bytes(CONTENT)
    return path


@pytest.fixture(params=["link", "copy"])
def how(request, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a file lands: a hard link from staging, or a copy (another filesystem)."""
    if request.param == "copy":
        link = os.link

        def cross_device(src, dst, **kwargs):
            if Path(src).name == "staged.dat":  # from staging: pretend another filesystem
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
            return link(src, dst, **kwargs)

        monkeypatch.setattr(dataflow_lite_local.os, "link", cross_device)
    return request.param


def job_for(staged: Path, target: PurePosixPath = TARGET) -> TransferJob:
    return TransferJob(
        staged=staged,
        target=target,
        sha256=hashlib.sha256(CONTENT).hexdigest(),
        size=len(CONTENT),
        credentials=None,
    )


def untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["authorized_keys"]
    assert (outside / "authorized_keys").read_bytes() == PRECIOUS


def no_debris(root: Path) -> None:
    assert [p for p in root.rglob("*.part")] == []


def test_the_dataset_lands_and_its_later_writes_and_retries_go_on(adapter, root, staged, how):
    adapter.write_file(METADATA, b"{}", None)
    handle = adapter.submit(job_for(staged))
    assert handle == how
    assert adapter.submit(job_for(staged)) == how  # a retry finds its own bytes
    assert adapter.verify(job_for(staged), handle)
    second = job_for(staged, FOLDER / "raw" / "second.dat")
    assert adapter.verify(second, adapter.submit(second))
    adapter.write_file(METADATA, b'{"done": true}', None)
    assert (root / METADATA).read_bytes() == b'{"done": true}'
    assert (root / TARGET).read_bytes() == CONTENT
    assert (root / FOLDER / FOLDER_MARKER).is_file()
    no_debris(root)


@pytest.mark.parametrize(
    "planted", ["microscope", "microscope/2026-12-01", str(FOLDER), str(FOLDER / "raw")]
)
def test_a_link_planted_for_a_folder_is_never_followed(
    adapter, root, outside, staged, how, planted
):
    if planted == str(FOLDER / "raw"):
        adapter.write_file(METADATA, b"{}", None)  # the dataset's folder is its own
    link = root / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(AdapterError) as refused:
        adapter.submit(job_for(staged))
    assert refused.value.permanent
    assert str(refused.value) == (
        f"{link} is a symbolic link (to {outside}): links at the destination are never followed"
    )
    if planted != str(FOLDER / "raw"):
        with pytest.raises(AdapterError, match="is a symbolic link") as refused:
            adapter.write_file(METADATA, b"{}", None)
        assert refused.value.permanent
    untouched(outside)
    no_debris(root)


def test_a_link_planted_as_the_file_name_never_replaces_its_target(
    adapter, root, outside, staged, how
):
    adapter.write_file(METADATA, b"{}", None)
    (root / TARGET).parent.mkdir()
    (root / TARGET).symlink_to(outside / "authorized_keys")
    with pytest.raises(AdapterError) as refused:
        adapter.submit(job_for(staged))
    assert refused.value.permanent
    assert f"{root / TARGET} is a symbolic link (to {outside / 'authorized_keys'})" in str(
        refused.value
    )
    with pytest.raises(AdapterError, match="is a symbolic link"):
        adapter.verify(job_for(staged), how)
    untouched(outside)
    no_debris(root)


def test_a_link_planted_as_metadata_json_is_refused(adapter, root, outside):
    adapter.write_file(METADATA, b"{}", None)
    (root / METADATA).unlink()
    (root / METADATA).symlink_to(outside / "authorized_keys")
    with pytest.raises(AdapterError) as refused:
        adapter.write_file(METADATA, b'{"name": "scan"}', None)
    assert refused.value.permanent
    assert str(refused.value).startswith(f"{root / METADATA} is a symbolic link")
    assert (root / METADATA).is_symlink()
    untouched(outside)
    no_debris(root)


@pytest.mark.parametrize("marker", [None, b"forged\n", "link"])
def test_a_dataset_folder_made_by_someone_else_is_never_taken_over(
    adapter, root, outside, staged, marker
):
    folder = root / FOLDER
    folder.mkdir(parents=True)  # a neighbour guessed the name: <HHMMSS>_<slug>
    if marker == "link":
        (folder / FOLDER_MARKER).symlink_to(outside / "authorized_keys")
    elif marker is not None:
        (folder / FOLDER_MARKER).write_bytes(marker)
    message = (
        f"{folder} already exists and was not made by this dataset's transfers: "
        "a dataset's folder is never taken over"
    )
    with pytest.raises(AdapterError) as refused:
        adapter.submit(job_for(staged))
    assert (refused.value.permanent, str(refused.value)) == (True, message)
    with pytest.raises(AdapterError) as refused:
        adapter.write_file(METADATA, b"{}", None)
    assert (refused.value.permanent, str(refused.value)) == (True, message)
    assert sorted(p.name for p in folder.iterdir()) == ([FOLDER_MARKER] if marker else [])
    untouched(outside)


@dataclass
class Waiting:
    """What a transfer waiting for a marker saw when it asked whether one is being written."""

    asked: threading.Event = field(default_factory=threading.Event)
    saw_none: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def waiting(adapter: LocalAdapter, monkeypatch: pytest.MonkeyPatch) -> Waiting:
    seen = Waiting()
    being_marked = adapter.tree._being_marked

    def watched(folder_fd: int, relative: PurePosixPath) -> bool:
        seen.asked.set()
        answer = being_marked(folder_fd, relative)
        if not answer:
            seen.saw_none.set()
        return answer

    monkeypatch.setattr(adapter.tree, "_being_marked", watched)
    return seen


def test_writes_beside_the_first_wait_for_its_marker(adapter, root, staged, monkeypatch, waiting):
    """A dataset's first write makes its folder and marks it; a transfer of the same dataset
    that finds the folder meanwhile waits for the marker while it is being written (a slow
    sync), past MARKER_WAIT, and never reads it half-written."""
    monkeypatch.setattr(safe_paths, "MARKER_WAIT", 0.2)
    token = adapter.tree.token
    marking = threading.Event()

    def held_token(relative: PurePosixPath) -> bytes:  # the marker's write, held for the other
        if not marking.is_set():
            marking.set()
            waiting.asked.wait(10)
            time.sleep(0.6)
        return token(relative)

    monkeypatch.setattr(adapter.tree, "token", held_token)
    with ThreadPoolExecutor(1) as first:
        metadata = first.submit(adapter.write_file, METADATA, b"{}", None)
        assert marking.wait(5) and (root / FOLDER).is_dir()  # made, its marker being written
        assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))
        metadata.result()
    assert waiting.asked.is_set()
    assert (root / FOLDER / FOLDER_MARKER).read_bytes() == token(FOLDER) + b"\n"
    assert sorted(p.name for p in (root / FOLDER).iterdir()) == sorted(
        [FOLDER_MARKER, "metadata.json", "raw"]
    )


def test_a_neighbours_locked_file_holds_a_transfer_only_so_long(adapter, root, staged, monkeypatch):
    """A neighbour's folder with a locked file named like a marker being written: the transfer
    gives up once MARKING_WAIT has passed (to be tried again, as a slow first write's would),
    not waits for as long as the neighbour holds it; once let go, it is refused for good."""
    monkeypatch.setattr(safe_paths, "MARKER_WAIT", 0.1)
    monkeypatch.setattr(safe_paths, "MARKING_WAIT", 0.5)
    folder = root / FOLDER
    folder.mkdir(parents=True)
    planted = folder / f"{MARKING}0123abcd.part"
    with planted.open("wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert being_written(planted)
        started = time.monotonic()
        with pytest.raises(AdapterError, match="is still being marked after 0.5 s") as gave_up:
            adapter.submit(job_for(staged))
        assert 0.5 <= time.monotonic() - started
        assert not gave_up.value.permanent
    assert not being_written(planted)  # its writer let go
    with pytest.raises(AdapterError, match="was not made by this dataset's transfers") as refused:
        adapter.submit(job_for(staged))
    assert refused.value.permanent


def earlier_releases_folder(root: Path) -> Path:
    folder = root / FOLDER
    folder.mkdir(parents=True)  # as releases before the marker made it, with its metadata.json
    (folder / "metadata.json").write_bytes(b"{}")
    os.utime(folder / "metadata.json", (1, 1))
    return folder


def test_a_folder_an_earlier_release_made_is_marked_on_its_next_write(adapter, root, staged):
    folder = earlier_releases_folder(root)
    adapter.write_file(METADATA, b'{"again": true}', None)
    assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))
    assert (folder / FOLDER_MARKER).read_bytes() == adapter.tree.token(FOLDER) + b"\n"


def test_two_transfers_mark_an_earlier_releases_folder_at_once(adapter, root, staged, monkeypatch):
    monkeypatch.setattr(safe_paths, "MARKER_WAIT", 0)  # the second marks too, not waits
    monkeypatch.setattr(safe_paths, "MARKING_WAIT", 0)
    earlier_releases_folder(root)
    token = adapter.tree.token
    both = threading.Barrier(2, timeout=10)
    calls = iter(range(1000))

    def met_token(relative: PurePosixPath) -> bytes:  # both marks written before either links
        if next(calls) < 2:
            both.wait()
        return token(relative)

    monkeypatch.setattr(adapter.tree, "token", met_token)
    with ThreadPoolExecutor(1) as first:
        metadata = first.submit(adapter.write_file, METADATA, b'{"again": true}', None)
        assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))
        metadata.result()
    assert (root / FOLDER / FOLDER_MARKER).read_bytes() == token(FOLDER) + b"\n"


@pytest.mark.parametrize("marker", ["empty", "folder", "fifo", "link"])
def test_an_earlier_releases_folder_with_a_bad_marker_is_refused(
    adapter, root, outside, staged, marker
):
    folder = earlier_releases_folder(root)
    where = folder / FOLDER_MARKER
    if marker == "empty":  # as a worker killed between making and writing it left it
        where.write_bytes(b"")
    elif marker == "folder":
        where.mkdir()
    elif marker == "fifo":
        os.mkfifo(where)
    else:
        where.symlink_to(outside / "authorized_keys")
    with pytest.raises(AdapterError) as refused:
        adapter.submit(job_for(staged))
    assert refused.value.permanent
    assert "was not made by this dataset's transfers" in str(refused.value)
    untouched(outside)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list:
    """os.fsync that first runs the hooks put in the list, ``(prefix, hook)``, on the file
    whose name begins with ``prefix`` (a temporary of the adapter's), each once."""
    hooks: list = []
    fsync = os.fsync

    def hooked(fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        for prefix, hook in list(hooks):
            if name.startswith(prefix):
                hooks.remove((prefix, hook))
                hook(fd, name)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", hooked)
    return hooks


def test_a_temporary_swapped_for_a_link_never_links_its_target(
    adapter, root, outside, staged, syncs
):
    """A neighbour who puts a link in the marker's temporary's place gets no hard link to the
    file it names (the marker is never made through a link), and the folder is refused."""

    def swap(fd: int, name: str) -> None:
        folder = root / FOLDER
        (folder / name).unlink()
        (folder / name).symlink_to(outside / "authorized_keys")

    syncs.append((MARKING, swap))
    with pytest.raises(AdapterError) as refused:
        adapter.submit(job_for(staged))
    assert refused.value.permanent
    assert os.stat(outside / "authorized_keys").st_nlink == 1
    untouched(outside)


@pytest.mark.parametrize("how", ["copy"], indirect=True)
def test_a_copys_temporary_swapped_for_a_link_never_links_its_target(
    adapter, root, outside, staged, syncs, how
):
    """The same for a file copied across file systems: the link put in its place is refused
    and taken away, and no hard link is made to the file it names."""

    def swap(fd: int, name: str) -> None:
        (root / TARGET.parent / name).unlink()
        (root / TARGET.parent / name).symlink_to(outside / "authorized_keys")

    syncs.append((f".{TARGET.name}.", swap))
    with pytest.raises(AdapterError, match="was replaced while it was written") as refused:
        adapter.submit(job_for(staged))
    assert refused.value.permanent
    assert not (root / TARGET).is_symlink() and not (root / TARGET).exists()
    assert os.stat(outside / "authorized_keys").st_nlink == 1
    untouched(outside)


def test_temporaries_are_this_accounts_alone_until_they_land(adapter, root, staged, monkeypatch):
    """No other account can open a temporary (to lock it before its writer does); what lands
    is readable as before."""
    modes = {}
    lock_for_writing = safe_paths.lock_for_writing

    def noted(fd: int, name: str, dir_fd: int | None = None) -> bool:
        modes[name.split(".")[1]] = stat.S_IMODE(os.fstat(fd).st_mode)
        return lock_for_writing(fd, name, dir_fd=dir_fd)

    monkeypatch.setattr(safe_paths, "lock_for_writing", noted)
    adapter.write_file(METADATA, b"{}", None)
    assert modes == {"": 0o600, "metadata": 0o600}  # ..dataflow-lite.*.part, .metadata.json.*
    assert stat.S_IMODE((root / METADATA).stat().st_mode) == 0o644
    assert stat.S_IMODE((root / FOLDER / FOLDER_MARKER).stat().st_mode) == 0o644


def test_a_marker_written_whole_by_a_killed_worker_is_taken_up(adapter, root, staged):
    """A worker killed after writing the marker's temporary and before linking it leaves an
    unmarked folder: its temporary, holding this path's HMAC, is linked into place by the next
    transfer. One holding anything else is not, and the folder is refused."""
    folder = root / FOLDER
    folder.mkdir(parents=True)
    (folder / f"{MARKING}0123abcd.part").write_bytes(adapter.tree.token(FOLDER) + b"\n")
    assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))
    assert (folder / FOLDER_MARKER).read_bytes() == adapter.tree.token(FOLDER) + b"\n"
    assert sorted(p.name for p in folder.iterdir()) == [FOLDER_MARKER, "raw"]
    other = root / "microscope/2026-12-01/101501_other"
    other.mkdir()
    (other / f"{MARKING}0123abcd.part").write_bytes(adapter.tree.token(FOLDER) + b"\n")
    with pytest.raises(AdapterError, match="was not made by this dataset's transfers"):
        adapter.write_file(
            PurePosixPath("microscope/2026-12-01/101501_other/metadata.json"), b"{}", None
        )
    assert not (other / FOLDER_MARKER).exists()


def test_the_start_up_sweep_takes_up_a_killed_workers_marker(adapter, root, staged):
    """The killed worker's own retry comes after its start-up sweep: the sweep links the
    marker into place rather than remove it, and sweeps what is left."""
    folder = root / FOLDER
    folder.mkdir(parents=True)
    (folder / f"{MARKING}0123abcd.part").write_bytes(adapter.tree.token(FOLDER) + b"\n")
    (folder / f"{MARKING}4567cdef.part").write_bytes(b"not this server's\n")
    assert adapter.remove_debris({FOLDER: {"metadata.json"}}) == [
        f"removed {folder}/{MARKING}4567cdef.part: a write cut off before it landed"
    ]
    assert (folder / FOLDER_MARKER).read_bytes() == adapter.tree.token(FOLDER) + b"\n"
    assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))


@pytest.mark.parametrize("how", ["copy"], indirect=True)
def test_a_copy_lands_readable_as_before(adapter, root, staged, how):
    assert adapter.submit(job_for(staged)) == "copy"
    assert stat.S_IMODE((root / TARGET).stat().st_mode) == 0o644


def test_a_marker_that_cannot_be_read_now_is_tried_again(adapter, root, staged, monkeypatch):
    adapter.write_file(METADATA, b"{}", None)
    real_open = os.open

    def failing(path, flags, *args, **kwargs):
        if path == FOLDER_MARKER:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing)
    with pytest.raises(AdapterError, match="Input/output error") as failed:
        adapter.submit(job_for(staged))
    assert not failed.value.permanent


def test_a_temporary_taken_away_or_a_failed_sync_is_tried_again(adapter, root, staged, syncs):
    def remove(fd: int, name: str) -> None:
        (root / FOLDER / name).unlink()

    def fail(fd: int, name: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    for hook in (remove, fail):
        syncs.append((MARKING, hook))
        with pytest.raises(AdapterError) as failed:
            adapter.submit(job_for(staged))
        assert not failed.value.permanent, failed.value
        assert not (root / FOLDER).exists()  # removed: the next try makes it again
    assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))


def test_a_transfer_waiting_on_a_first_write_that_failed_tries_again(
    adapter, root, staged, syncs, waiting, monkeypatch
):
    """The first write fails while another waits for its marker, and removes its folder, its
    temporary a moment before: the waiting transfer, having seen no marker being written in
    that moment, is tried again, not refused for good."""
    monkeypatch.setattr(safe_paths, "MARKER_WAIT", 0.2)
    rmdir = os.rmdir

    def fail_once_waited_for(fd: int, name: str) -> None:
        waiting.asked.wait(10)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def rmdir_once_seen(path, *, dir_fd=None):  # the folder goes once its temporary was missed
        waiting.saw_none.wait(10)
        rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rmdir", rmdir_once_seen)
    syncs.append((MARKING, fail_once_waited_for))
    with ThreadPoolExecutor(1) as first:
        metadata = first.submit(adapter.write_file, METADATA, b"{}", None)
        deadline = time.monotonic() + 10
        while not any(p.name.startswith(MARKING) for p in (root / FOLDER).glob(".*")):
            assert time.monotonic() < deadline, "the first write never began its marker"
            time.sleep(0.01)  # the first write is marking the folder it made
        with pytest.raises(AdapterError) as failed:
            adapter.submit(job_for(staged))  # waits on the folder its first write removes
        assert not failed.value.permanent, failed.value
        assert "was removed while this transfer waited" in str(failed.value)
        with pytest.raises(AdapterError, match="Input/output error"):
            metadata.result()
    assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))


def test_a_file_system_without_locks_leaves_nothing_behind(adapter, root, staged, monkeypatch):
    def no_locks(*args, **kwargs):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    with monkeypatch.context() as patched:
        patched.setattr(safe_paths, "lock_for_writing", no_locks)
        with pytest.raises(AdapterError, match="No locks available") as failed:
            adapter.submit(job_for(staged))
    assert not failed.value.permanent
    assert not (root / FOLDER).exists()
    assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))


def test_a_neighbours_folder_is_not_taken_for_an_earlier_releases(adapter, root, staged):
    assert adapter.tree.key  # the marking began (its key made) before the folder below
    folder = root / FOLDER
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_bytes(b"{}")  # made now, not before the marking began
    with pytest.raises(AdapterError, match="was not made by this dataset's transfers"):
        adapter.submit(job_for(staged))
    old = folder.parent / "093000_older"
    old.mkdir()
    (old / "metadata.json").write_bytes(b"{}")
    os.utime(old / "metadata.json", (1, 1))
    os.chown(old / "metadata.json", 65534, 65534)  # another account's (nobody)
    with pytest.raises(AdapterError, match="was not made by this dataset's transfers"):
        adapter.write_file(PurePosixPath(old.relative_to(root)) / "metadata.json", b"{}", None)


def test_another_servers_marker_is_not_this_ones(adapter, root, staged, tmp_path):
    adapter.write_file(METADATA, b"{}", None)
    other_instance = tmp_path / "other-instance"
    other_instance.mkdir()
    other = LocalAdapter(
        adapter.endpoint_options, AdapterContext(other_instance, tmp_path / "staging")
    )
    with pytest.raises(AdapterError, match="was not made by this dataset's transfers"):
        other.submit(job_for(staged))


def test_the_marker_name_is_refused_as_a_users_file_name():
    with pytest.raises(UnsafePath, match="is not allowed"):
        check_file_name(FOLDER_MARKER)


def test_a_link_planted_in_a_real_dataset_fails_its_transfer_for_good(
    cli, client, auth, tmp_path: Path, outside: Path
):
    archive = tmp_path / "archive"
    archive.mkdir()
    endpoint = cli.json("endpoint", "add", "archive", "--type", "local", "--path", str(archive))
    setting = f"setting=globus.destination_endpoint&value={endpoint['id']}"
    assert client.post(f"/api/v1/user-settings/?{setting}", headers=auth).status_code == 200
    dataset = client.post("/api/v1/datasets", json={"name": "run 7"}, headers=auth).json
    folder = Path(dataset["destination"])
    (folder / "raw").symlink_to(outside, target_is_directory=True)
    sent = client.post(
        "/api/v1/dataset-file-upload",
        data={
            "dataset_id": str(dataset["id"]),
            "relative_path": "raw",
            "file": (io.BytesIO(CONTENT), "authorized_keys"),
        },
        headers=auth,
    ).json
    transfer = client.get(f"/api/v1/transfers/{sent['transfer_id']}", headers=auth).json
    assert (transfer["state"], transfer["permanent"]) == ("failed", True)
    assert transfer["last_error"] == (
        f"{folder / 'raw'} is a symbolic link (to {outside}): links at the destination are "
        "never followed"
    )
    untouched(outside)


def test_endpoints_whose_directories_overlap_are_refused(cli, tmp_path: Path):
    archive = tmp_path / "archive"
    (archive / "inner").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(archive)
    cli("endpoint", "add", "archive", "--type", "local", "--path", str(archive))
    refusal = (
        f"Error: endpoint archive already uses {archive}: the paths of two endpoints may not be "
        "the same or one inside the other"
    )
    for path in (archive, tmp_path / "alias", archive / "inner", tmp_path / "archive/../archive"):
        shown = cli.fails("endpoint", "add", "again", "--type", "local", "--path", str(path))
        assert shown.strip() == refusal
    # The default endpoint lives inside the instance folder: a parent of it overlaps too.
    assert "endpoint local already uses" in cli.fails(
        "endpoint", "add", "all", "--type", "local", "--path", str(tmp_path)
    )
    cli("endpoint", "add", "sibling", "--type", "local", "--path", str(tmp_path / "archive2"))


def test_sftp_endpoints_on_one_host_and_path_overlap():
    from dataflow_lite_sftp import SftpAdapter

    def options(host: str, path: str, port: int = 22) -> dict:
        return {"host": host, "port": port, "username": "u", "path": path}

    overlaps = SftpAdapter.overlaps
    assert overlaps(options("nas", "/data"), options("NAS", "/data/beamline"))
    assert overlaps(options("nas", "data"), options("nas", "data"))
    assert not overlaps(options("nas", "/data"), options("nas", "/data2"))
    assert not overlaps(options("nas", "/data"), options("other", "/data"))
    assert not overlaps(options("nas", "/data"), options("nas", "/data", port=2222))
