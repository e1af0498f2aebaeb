"""Uploads through the real server: slow clients, parallel clients, clients that give up."""

from __future__ import annotations

import hashlib
import json
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from requests_toolbelt import MultipartEncoder

from .conftest import start_server, stop_server, wait_for_transfers

pytestmark = pytest.mark.server


def create_dataset(api: str, key: str, name: str) -> dict:
    response = requests.post(
        api + "/datasets", json={"name": name}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 201, response.text
    return response.json()


def multipart(
    dataset_id: int, name: str, content: bytes, relative_path: str = ""
) -> tuple[bytes, bytes, str]:
    """The head and tail of a multipart body around ``content``, and its content type."""
    boundary = "dataflowlitetestboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="dataset_id"\r\n\r\n{dataset_id}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="relative_path"\r\n\r\n'
        f"{relative_path}\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


def raw_post(
    url: str, key: str, content_type: str, parts: list[bytes], pause: float, length: int
) -> socket.socket:
    """Send a POST's headers and ``parts`` of its body over a socket, sleeping between parts."""
    target = urllib.parse.urlsplit(url)
    connection = socket.create_connection((target.hostname, target.port))
    try:
        connection.sendall(
            (
                f"POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                f"Authorization: Bearer {key}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        )
        for part in parts:
            connection.sendall(part)
            time.sleep(pause)
    except OSError:
        connection.close()
        raise
    return connection


def read_response(connection: socket.socket) -> tuple[int, dict]:
    """Read the whole response, then close the connection."""
    received = b""
    with connection:
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_slow_upload_outlasting_the_worker_timeout_lands_whole(
    cli, instance: Path, tmp_path: Path
):
    server = start_server(instance, tmp_path / "server.log", "--timeout", "2")
    try:
        key = cli.user_key("suhas")
        dataset = create_dataset(server.api, key, "slow link")
        content = bytes(range(256)) * 4096  # 1 MiB
        head, tail, content_type = multipart(dataset["id"], "slow.bin", content, "runs/1")
        pieces = [content[i : i + 65536] for i in range(0, len(content), 65536)]
        started = time.monotonic()
        # 16 pieces, 0.4 s apart: the body takes about 6.5 s, over three times the 2 s timeout.
        connection = raw_post(
            server.api + "/dataset-file-upload",
            key,
            content_type,
            [head, *pieces, tail],
            0.4,
            len(head) + len(content) + len(tail),
        )
        status, body = read_response(connection)
        assert time.monotonic() - started > 3 * 2
        transfers = wait_for_transfers(server.api, key, dataset["id"])
    finally:
        stop_server(server)
    assert status == 201, body
    assert {t["state"] for t in transfers} == {"done"}
    landed = Path(body["destination"])
    assert landed.read_bytes() == content
    assert landed.relative_to(instance / "dataflow").parts[-3:] == ("runs", "1", "slow.bin")


def test_a_client_that_gives_up_mid_upload_leaves_nothing(live_server, cli, instance: Path):
    key = cli.user_key("suhas")
    dataset = create_dataset(live_server.api, key, "abandoned")
    head, tail, content_type = multipart(dataset["id"], "partial.bin", b"")
    connection = raw_post(
        live_server.api + "/dataset-file-upload",
        key,
        content_type,
        [head, b"x" * 300_000],
        0.2,
        len(head) + 10_000_000 + len(tail),
    )
    connection.close()
    # The server notices the closed connection (a moment later, or many on a busy machine): the
    # request ends, and the access log says so, once what it staged is removed.
    deadline = time.monotonic() + 60
    ended = '"POST /api/v1/dataset-file-upload"'
    while ended not in live_server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ended in live_server.log.read_text(), "the server never ended the request"
    wait_for_transfers(live_server.api, key, dataset["id"])  # the folder's metadata.json
    info = requests.get(
        f"{live_server.api}/datasets/{dataset['id']}", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert info["dataset_files"] == []
    assert list((instance / "staging").iterdir()) == []
    landed = sorted(p.name for p in (instance / "dataflow").rglob("*") if p.is_file())
    assert landed == [".dataflow-lite", "metadata.json"]  # the folder's marker and metadata only


def test_parallel_uploads_to_one_dataset_all_land(live_server, cli, instance: Path):
    key = cli.user_key("suhas")
    dataset = create_dataset(live_server.api, key, "parallel")
    contents = {
        f"file{i:02}.bin": hashlib.sha256(str(i).encode()).digest() * (2000 + i) for i in range(16)
    }

    def upload(name: str) -> requests.Response:
        encoder = MultipartEncoder(
            {
                "dataset_id": str(dataset["id"]),
                "relative_path": "a/b",
                "file": (name, contents[name], "application/octet-stream"),
            }
        )
        return requests.post(
            live_server.api + "/dataset-file-upload",
            data=encoder,
            headers={"Content-Type": encoder.content_type, "Authorization": f"Bearer {key}"},
        )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(upload, contents))
    assert [r.status_code for r in responses] == [201] * len(contents), [r.text for r in responses]
    transfers = wait_for_transfers(live_server.api, key, dataset["id"])
    assert {t["state"] for t in transfers} == {"done"}, [t["last_error"] for t in transfers]
    folder = Path(
        requests.get(
            f"{live_server.api}/datasets/{dataset['id']}",
            headers={"Authorization": f"Bearer {key}"},
        ).json()["destination"]
    )
    for name, content in contents.items():
        assert (folder / "a" / "b" / name).read_bytes() == content
    document = json.loads((folder / "metadata.json").read_text())
    assert sorted(f["path"] for f in document["files"]) == sorted(
        f"a/b/{name}" for name in contents
    )
    info = requests.get(
        f"{live_server.api}/datasets/{dataset['id']}", headers={"Authorization": f"Bearer {key}"}
    ).json()
    directories = [
        (f["relative_path"], f["name"]) for f in info["dataset_files"] if f["is_directory"]
    ]
    assert directories == [("", "a"), ("a", "b")]


def test_a_large_upload_streams_to_the_destination_intact(
    live_server, cli, instance: Path, tmp_path: Path
):
    key = cli.user_key("suhas")
    dataset = create_dataset(live_server.api, key, "large")
    source = tmp_path / "large.bin"
    with source.open("wb") as out:
        for block in range(48):
            out.write(hashlib.sha256(str(block).encode()).digest() * 32768)  # 1 MiB each
    with source.open("rb") as handle:
        encoder = MultipartEncoder(
            {"dataset_id": str(dataset["id"]), "file": ("large.bin", handle)}
        )
        response = requests.post(
            live_server.api + "/dataset-file-upload",
            data=encoder,
            headers={"Content-Type": encoder.content_type, "Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 201, response.text
    body = response.json()
    assert {t["state"] for t in wait_for_transfers(live_server.api, key, dataset["id"])} == {"done"}
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert (body["file_length"], body["sha256"]) == (source.stat().st_size, expected)
    assert hashlib.sha256(Path(body["destination"]).read_bytes()).hexdigest() == expected
