"""``dataset-file-bundle`` through the real server (gunicorn): several small files in one request,
all catalogued, transferred and verified, or refused whole with nothing left behind."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import requests

from .conftest import LiveServer, start_server, stop_server, wait_for_transfers

pytestmark = pytest.mark.server


EMPTY = hashlib.sha256(b"").hexdigest()
ABC = hashlib.sha256(b"abc").hexdigest()


def create_dataset(server: LiveServer, key: str, name: str) -> int:
    response = requests.post(
        server.api + "/datasets",
        json={"name": name},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def send(
    server: LiveServer,
    key: str,
    dataset_id: int,
    files: dict[str, bytes],
    manifest: list[dict] | None = None,
) -> requests.Response:
    """POST a bundle encoded by requests' own multipart encoder (the fields first, then one
    part of the files' bytes one after the other)."""
    if manifest is None:
        manifest = [
            {"path": path, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
            for path, content in files.items()
        ]
    return requests.post(
        server.api + "/dataset-file-bundle",
        data={"dataset_id": str(dataset_id), "manifest": json.dumps(manifest)},
        files=[("files", ("bundle", b"".join(files.values())))],
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def listed(server: LiveServer, key: str, dataset_id: int) -> dict[str, dict]:
    dataset = requests.get(
        f"{server.api}/datasets/{dataset_id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ).json()
    return {
        "/".join(p for p in (f["relative_path"], f["name"]) if p): f
        for f in dataset["dataset_files"]
        if not f["is_directory"]
    }


def staged(instance: Path) -> list[Path]:
    return sorted((instance / "staging").glob("upload-*"))


def test_a_bundle_lands_whole_transferred_and_verified_with_one_audit_event(
    live_server, cli, instance
):
    key = cli.user_key("ada")
    dataset_id = create_dataset(live_server, key, "run7")
    files = {f"frames/{n:03}.raw": os.urandom(64 << 10) for n in range(120)}
    files["notes.txt"] = b"beam at 4.2 K"
    files["frames/deeper/empty.dat"] = b""
    answer = send(live_server, key, dataset_id, files)
    assert answer.status_code == 201, answer.text
    shown = answer.json()["files"]
    assert [f"{f['relative_path']}/{f['name']}".lstrip("/") for f in shown] == list(files)
    transfers = wait_for_transfers(live_server.api, key, dataset_id)
    file_transfers = [t for t in transfers if t["kind"] == "file"]
    assert len(file_transfers) == len(files)
    assert all(t["state"] == "done" for t in file_transfers), [
        (t["state"], t["last_error"]) for t in file_transfers if t["state"] != "done"
    ]
    on_server = listed(live_server, key, dataset_id)
    assert sorted(on_server) == sorted(files)
    for path, content in files.items():
        assert on_server[path]["sha256"] == hashlib.sha256(content).hexdigest()
        assert on_server[path]["file_length"] == len(content)
    for file in shown:
        path = f"{file['relative_path']}/{file['name']}".lstrip("/")
        assert Path(file["destination"]).read_bytes() == files[path]
    assert staged(instance) == []  # every staged copy went once verified
    trail = requests.get(
        f"{live_server.api}/audit",
        params={"object_type": "dataset", "object_id": dataset_id},
        headers={"Authorization": f"Bearer {cli.user_key('root', admin=True)}"},
        timeout=30,
    )
    assert trail.status_code == 200, trail.text
    added = [e for e in trail.json()["results"] if e["action"] == "file.add"]
    assert len(added) == 1 and added[0]["summary"]["count"] == len(files)
    assert [f["path"] for f in added[0]["summary"]["files"]] == list(files)


def test_a_taken_path_refuses_the_whole_bundle_before_any_byte_is_staged(
    live_server, cli, instance
):
    key = cli.user_key("ada")
    dataset_id = create_dataset(live_server, key, "run8")
    assert send(live_server, key, dataset_id, {"a/one.raw": b"1"}).status_code == 201
    refused = send(live_server, key, dataset_id, {"a/two.raw": b"2", "a/one.raw": b"other"})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert set(body) >= {"code", "status", "message", "errors"}
    assert "a/one.raw" in body["message"] and "nothing was overwritten" in body["message"]
    assert sorted(listed(live_server, key, dataset_id)) == ["a/one.raw"]  # not a/two.raw
    # A file where the bundle needs a folder is taken too.
    clash = send(live_server, key, dataset_id, {"a/one.raw/x.raw": b"3"})
    assert clash.status_code == 409 and "not a directory" in clash.json()["message"]
    wait_for_transfers(live_server.api, key, dataset_id)
    assert staged(instance) == []


@pytest.mark.parametrize(
    ("files", "manifest", "words"),
    [
        ({"x.raw": b"abc"}, [{"path": "x.raw", "size": 3, "sha256": "0" * 64}], "sha256 of file 1"),
        ({"x.raw": b"abcd"}, [{"path": "x.raw", "size": 3, "sha256": ABC}], "longer"),
        ({"x.raw": b"ab"}, [{"path": "x.raw", "size": 3, "sha256": "0" * 64}], "shorter"),
        ({"x": b"", "y": b"y"}, [{"path": "x", "size": 0, "sha256": EMPTY}], "longer"),
        ({"a": b"", "b": b""}, [{"path": "../a", "size": 0, "sha256": "0" * 64}] * 2, "refused"),
        ({"a": b"", "b": b""}, [{"path": "d/a", "size": 0, "sha256": "0" * 64}] * 2, "twice"),
        (
            {"a": b"", "b": b""},
            [
                {"path": "d", "size": 0, "sha256": "0" * 64},
                {"path": "d/a", "size": 0, "sha256": "0" * 64},
            ],
            "file and a folder",
        ),  # fmt: skip
        ({"a": b""}, [{"path": "a", "size": -1, "sha256": "0" * 64}], "whole number"),
        ({"a": b""}, [{"path": "a", "size": 0, "sha256": "XYZ"}], "hex"),
        ({"a": b""}, [42], "a path inside the dataset is required"),
    ],
    ids=[
        "sha256",
        "longer",
        "shorter",
        "extra-file",
        "unsafe",
        "twice",
        "file-and-folder",
        "size",
        "hex",
        "empty",
    ],  # fmt: skip
)
def test_a_bad_bundle_is_a_400_and_leaves_nothing(
    live_server, cli, instance, files, manifest, words
):
    key = cli.user_key("ada")
    dataset_id = create_dataset(live_server, key, "bad")
    # A good file first: a bad one later in the bundle still refuses it too.
    good = b"good"
    files = {"good.raw": good, **files}
    manifest = [
        {"path": "good.raw", "size": 4, "sha256": hashlib.sha256(good).hexdigest()},
        *manifest,
    ]
    answer = send(live_server, key, dataset_id, files, manifest)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == 400 and words in body["message"], body
    assert listed(live_server, key, dataset_id) == {}
    assert staged(instance) == []


def test_a_bundle_over_the_limits_is_a_413(cli, instance, tmp_path):
    key = cli.user_key("ada")
    server = start_server(
        instance,
        tmp_path / "server.log",
        env={"DATAFLOW_LITE_BUNDLE_MAX_FILES": "3", "DATAFLOW_LITE_BUNDLE_MAX_BYTES": "10"},
    )
    try:
        dataset_id = create_dataset(server, key, "limits")
        many = send(server, key, dataset_id, {f"{n}.raw": b"" for n in range(4)})
        assert many.status_code == 413 and "limit of 3 files" in many.json()["message"]
        large = send(server, key, dataset_id, {"a.raw": b"123456", "b.raw": b"123456"})
        assert large.status_code == 413 and "limit of 10 bytes" in large.json()["message"]
        assert send(server, key, dataset_id, {"a.raw": b"12345"}).status_code == 201
        assert sorted(listed(server, key, dataset_id)) == ["a.raw"]
    finally:
        stop_server(server)


def test_an_empty_or_malformed_bundle_is_a_400(live_server, cli, instance):
    key = cli.user_key("ada")
    dataset_id = create_dataset(live_server, key, "empty")
    empty = send(live_server, key, dataset_id, {}, [])
    assert empty.status_code == 400 and "non-empty" in empty.json()["message"]
    not_json = send(live_server, key, dataset_id, {"a": b"1"}, None)
    assert not_json.status_code == 201  # the control: the same files with their manifest
    no_manifest = requests.post(
        live_server.api + "/dataset-file-bundle",
        data={"dataset_id": str(dataset_id)},
        files=[("files", ("bundle", b"123"))],
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert no_manifest.status_code == 400 and "manifest" in no_manifest.json()["message"]
    assert sorted(listed(live_server, key, dataset_id)) == ["a"]


def test_someone_elses_dataset_is_refused(live_server, cli):
    owner = cli.user_key("ada")
    other = cli.user_key("bob")
    dataset_id = create_dataset(live_server, owner, "ada's")
    answer = send(live_server, other, dataset_id, {"x.raw": b"x"})
    assert answer.status_code in (403, 404), answer.text
    assert listed(live_server, owner, dataset_id) == {}
