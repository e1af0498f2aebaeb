"""A destination others can write in: planted links are refused, folders are never taken over."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import dataflow_lite_local
import pytest
from dataflow_lite_local import LocalAdapter, safe_paths

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


def test_writes_beside_the_first_wait_for_its_marker(adapter, root, staged, monkeypatch):
    """A dataset's first write makes its folder and marks it; a transfer of the same dataset
    that finds the folder meanwhile waits for the marker, never reads it half-written, and
    waits past MARKER_WAIT while the marker is still being written (a slow sync)."""
    monkeypatch.setattr(safe_paths, "MARKER_WAIT", 0.2)
    token = adapter.tree.token
    marking = threading.Event()

    def slow_token(relative: PurePosixPath) -> bytes:  # the marker's own write, slowed
        if not marking.is_set():
            marking.set()
            time.sleep(1)
        return token(relative)

    monkeypatch.setattr(adapter.tree, "token", slow_token)
    with ThreadPoolExecutor(1) as first:
        metadata = first.submit(adapter.write_file, METADATA, b"{}", None)
        assert marking.wait(5) and (root / FOLDER).is_dir()  # made, its marker being written
        assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))
        metadata.result()
    assert (root / FOLDER / FOLDER_MARKER).read_bytes() == token(FOLDER) + b"\n"
    assert sorted(p.name for p in (root / FOLDER).iterdir()) == sorted(
        [FOLDER_MARKER, "metadata.json", "raw"]
    )


def test_a_neighbours_locked_file_holds_a_transfer_only_so_long(adapter, root, staged, monkeypatch):
    """A neighbour's folder with a locked file named like a marker being written: refused once
    MARKING_WAIT has passed, not waited for as long as the neighbour holds it."""
    monkeypatch.setattr(safe_paths, "MARKER_WAIT", 0.1)
    monkeypatch.setattr(safe_paths, "MARKING_WAIT", 0.5)
    folder = root / FOLDER
    folder.mkdir(parents=True)
    planted = folder / f".{FOLDER_MARKER}.0123abcd.part"
    with planted.open("wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert being_written(planted)
        started = time.monotonic()
        with pytest.raises(AdapterError, match="was not made by this dataset's transfers"):
            adapter.submit(job_for(staged))
        assert 0.5 <= time.monotonic() - started
    assert not being_written(planted)  # its writer let go


def test_a_folder_an_earlier_release_made_is_marked_on_its_next_write(adapter, root, staged):
    folder = root / FOLDER
    folder.mkdir(parents=True)  # as releases before the marker made it, with its metadata.json
    (folder / "metadata.json").write_bytes(b"{}")
    os.utime(folder / "metadata.json", (1, 1))
    adapter.write_file(METADATA, b'{"again": true}', None)
    assert adapter.verify(job_for(staged), adapter.submit(job_for(staged)))
    assert (folder / FOLDER_MARKER).read_bytes() == adapter.tree.token(FOLDER) + b"\n"


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
