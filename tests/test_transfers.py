"""The transfer queue: failures in plain words, retries, cancellation, and the CLI's view."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest


def upload(client, auth, dataset_id: int, name: str, content: bytes) -> dict:
    response = client.post(
        "/api/v1/dataset-file-upload",
        data={"dataset_id": str(dataset_id), "file": (io.BytesIO(content), name)},
        headers=auth,
    )
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def archive(cli, client, auth, tmp_path: Path) -> Path:
    """A local endpoint chosen as the user's destination."""
    path = tmp_path / "archive"
    path.mkdir()
    endpoint = cli.json("endpoint", "add", "archive", "--type", "local", "--path", str(path))
    setting = f"setting=globus.destination_endpoint&value={endpoint['id']}"
    assert client.post(f"/api/v1/user-settings/?{setting}", headers=auth).status_code == 200
    return path


def test_a_missing_destination_fails_plainly_keeps_the_file_and_retries(
    client, auth, archive: Path, instance: Path
):
    dataset = client.post("/api/v1/datasets", json={"name": "run 7"}, headers=auth).json
    shutil.rmtree(archive)  # the share is unmounted
    sent = upload(client, auth, dataset["id"], "scan.dat", b"measurement")
    transfer = client.get(f"/api/v1/transfers/{sent['transfer_id']}", headers=auth).json
    assert (transfer["state"], transfer["permanent"], transfer["attempts"]) == ("failed", True, 1)
    assert (
        transfer["last_error"]
        == f"the destination directory {archive} does not exist (is it mounted?)"
    )
    assert [p.read_bytes() for p in (instance / "staging").iterdir()] == [b"measurement"]
    info = client.get(f"/api/v1/datasets/{dataset['id']}", headers=auth).json
    assert [f["transfer_state"] for f in info["dataset_files"]] == ["failed"]
    failed = client.get("/api/v1/transfers?state=failed", headers=auth).json
    assert sent["transfer_id"] in [t["id"] for t in failed]

    archive.mkdir()  # mounted again
    retried = client.post(f"/api/v1/transfers/{sent['transfer_id']}/retry", headers=auth)
    assert retried.status_code == 200
    assert retried.json["state"] == "done"
    assert (Path(sent["destination"])).read_bytes() == b"measurement"
    assert list((instance / "staging").iterdir()) == []
    again = client.post(f"/api/v1/transfers/{sent['transfer_id']}/retry", headers=auth)
    assert again.status_code == 409
    assert again.json["message"] == f"transfer {sent['transfer_id']} is done, not failed"


def test_transfers_are_private_to_their_user(cli, client, auth):
    dataset = client.post("/api/v1/datasets", json={"name": "mine"}, headers=auth).json
    sent = upload(client, auth, dataset["id"], "a.txt", b"a")
    other = {"Authorization": "Bearer " + cli.user_key("eve")}
    assert client.get(f"/api/v1/transfers/{sent['transfer_id']}", headers=other).status_code == 404
    assert client.get("/api/v1/transfers", headers=other).json == []
    assert client.get("/api/v1/transfers?state=sideways", headers=auth).status_code == 400


def test_the_cli_lists_retries_and_cancels(cli, client, auth, archive: Path):
    dataset = client.post("/api/v1/datasets", json={"name": "cli"}, headers=auth).json
    shutil.rmtree(archive)
    sent = upload(client, auth, dataset["id"], "b.txt", b"b")
    listed = cli("transfers", "list", "--state", "failed")
    assert f"{sent['transfer_id']:>6} failed" in listed and "does not exist" in listed
    assert "transfer 999 not found" in cli.fails("transfers", "retry", "999")
    assert "is done, not failed" in cli.fails("transfers", "retry", "1")  # dataset's metadata.json
    ended = cli.fails("transfers", "cancel", str(sent["transfer_id"]))
    assert f"transfer {sent['transfer_id']} is failed: it has ended" in ended
    checked = cli.fails("endpoint", "check", "archive")
    assert "FAIL reachable" in checked
    archive.mkdir()
    assert "ok   writable" in cli("endpoint", "check", "archive")
