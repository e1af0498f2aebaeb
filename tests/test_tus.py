"""Resumable uploads (tus 1.0) through the real server, driven by the real ``tuspy`` client."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import signal
import socket
import time
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from ordflow import API
from sqlmodel import select
from tusclient import client as tus
from tusclient.exceptions import TusCommunicationError
from tusclient.uploader import Uploader

from dataflow_lite import bootstrap
from dataflow_lite.api import tus as tus_route
from dataflow_lite.store import layout
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.models import Dataset, Endpoint, ResumableUpload, User, utcnow
from dataflow_lite.transfers.debris import remove_expired_uploads, remove_stale_staged_files

from .conftest import Cli, LiveServer, start_server, stop_server, wait_for_transfers

MIB = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def metadata(dataset_id: int | str, filename: str, relative_path: str | None = None) -> dict:
    found = {"dataset_id": str(dataset_id), "filename": filename}
    if relative_path is not None:
        found["relative_path"] = relative_path
    return found


def encoded(values: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


class Site:
    """One server, one user's key, and what the tests ask of it."""

    def __init__(self, server: LiveServer, cli: Cli, key: str) -> None:
        self.server, self.cli, self.key = server, cli, key
        self.auth = {"Authorization": f"Bearer {key}"}

    @property
    def uploads(self) -> str:
        return self.server.api + "/uploads/"

    def uploader(self, source: Path, key: str | None = None, **options: object) -> Uploader:
        """tuspy's uploader of ``source`` (read from memory: tuspy never closes a file it opens)."""
        client = tus.TusClient(self.uploads, headers={"Authorization": f"Bearer {key or self.key}"})
        return client.uploader(file_stream=io.BytesIO(source.read_bytes()), **options)

    def dataset(self, name: str = "tus run", key: str | None = None) -> int:
        return API(key or self.key, server_url=self.server.api).dataset_create(name)["id"]

    def create(self, values: dict[str, str], length: int, **headers: str) -> requests.Response:
        return requests.post(
            self.uploads,
            headers={
                **self.auth,
                **TUS,
                "Upload-Length": str(length),
                "Upload-Metadata": encoded(values),
                **headers,
            },
            timeout=30,
        )

    def head(self, url: str) -> requests.Response:
        return requests.head(url, headers={**self.auth, **TUS}, timeout=30)

    def offset(self, url: str) -> int:
        answer = self.head(url)
        assert answer.status_code == 200, answer.status_code
        return int(answer.headers["Upload-Offset"])

    def patch(self, url: str, offset: int, body: bytes, **headers: str) -> requests.Response:
        return requests.patch(
            url,
            data=body,
            headers={
                **self.auth,
                **TUS,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                **headers,
            },
            timeout=60,
        )

    def landed(self, dataset_id: int, name: str) -> dict:
        """The dataset's file ``name`` once its transfer ended, with where it landed."""
        transfers = wait_for_transfers(self.server.api, self.key, dataset_id)
        states = [(t["kind"], t["state"], t["last_error"]) for t in transfers]
        assert all(state == "done" for _, state, _ in states), states
        dataset = requests.get(
            f"{self.server.api}/datasets/{dataset_id}", headers=self.auth, timeout=30
        ).json()
        (entry,) = [f for f in dataset["dataset_files"] if f["name"] == name]
        return {**entry, "destination": Path(dataset["destination"]) / entry["relative_path"]}

    def staged(self, url: str) -> Path:
        upload_id = url.rstrip("/").rsplit("/", 1)[1]
        return self.cli.instance / "staging" / layout.resumable_staged_name(upload_id)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server for the tests that do not stop or reconfigure it."""
    root = tmp_path_factory.mktemp("tus")
    cli = Cli(root / "instance")
    cli("init")
    key = cli.user_key("suhas", name="Suhas Somnath")
    server = start_server(cli.instance, root / "server.log")
    yield Site(server, cli, key)
    stop_server(server)


@pytest.mark.server
def test_options_advertise_the_protocol_and_its_limits(site: Site):
    answer = requests.options(site.uploads, headers=site.auth, timeout=30)
    assert answer.status_code == 204
    assert answer.headers["Tus-Version"] == "1.0.0"
    assert set(answer.headers["Tus-Extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "expiration",
        "termination",
        "checksum",
    }
    assert answer.headers["Tus-Max-Size"] == str(1 << 40)
    assert answer.headers["Tus-Checksum-Algorithm"] == "sha1,sha256"


@pytest.mark.server
def test_a_whole_upload_lands_in_the_dataset_verified(site: Site, tmp_path: Path):
    dataset_id = site.dataset()
    source = random_file(tmp_path / "scan.ibw", 9 * MIB + 321)
    uploader = site.uploader(
        source,
        chunk_size=2 * MIB,
        metadata=metadata(dataset_id, "scan.ibw", "runs/1"),
        upload_checksum=True,  # tuspy's sha1 on every chunk
    )
    uploader.upload()
    assert uploader.offset == source.stat().st_size
    landed = site.landed(dataset_id, "scan.ibw")
    assert landed["relative_path"] == "runs/1"
    assert landed["file_length"] == source.stat().st_size
    assert landed["sha256"] == sha256(source)
    assert sha256(landed["destination"] / "scan.ibw") == sha256(source)
    # The upload now says it is complete, and its bytes left the staging area with the transfer.
    assert site.offset(uploader.url) == source.stat().st_size
    assert not site.staged(uploader.url).exists()


@pytest.mark.server
def test_an_empty_file_and_creation_with_upload(site: Site):
    dataset_id = site.dataset()
    empty = site.create(metadata(dataset_id, "empty.txt"), 0)
    assert empty.status_code == 201, empty.text
    body = os.urandom(300_000)
    whole = site.create(
        metadata(dataset_id, "at-once.bin"),
        len(body),
        **{"Content-Type": "application/offset+octet-stream"},
    )
    # requests cannot send a body through the helper's keyword headers: send it directly.
    assert whole.status_code == 201
    assert whole.headers["Upload-Offset"] == "0"
    with_body = requests.post(
        site.uploads,
        data=body,
        headers={
            **site.auth,
            **TUS,
            "Upload-Length": str(len(body)),
            "Upload-Metadata": encoded(metadata(dataset_id, "with-body.bin")),
            "Content-Type": "application/offset+octet-stream",
        },
        timeout=30,
    )
    assert with_body.status_code == 201, with_body.text
    assert with_body.headers["Upload-Offset"] == str(len(body))
    assert site.landed(dataset_id, "empty.txt")["sha256"] == hashlib.sha256(b"").hexdigest()
    assert site.landed(dataset_id, "with-body.bin")["sha256"] == hashlib.sha256(body).hexdigest()


def cut_patch(url: str, key: str, offset: int, length: int, sent: bytes) -> None:
    """A PATCH announcing ``length`` bytes that sends only ``sent`` and drops the connection."""
    target = urllib.parse.urlsplit(url)
    with socket.create_connection((target.hostname, target.port)) as connection:
        connection.sendall(
            (
                f"PATCH {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                f"Authorization: Bearer {key}\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {length}\r\n\r\n"
            ).encode()
        )
        connection.sendall(sent)


def wait_for_offset(site: Site, url: str, offset: int, seconds: float = 120) -> int:
    deadline = time.monotonic() + seconds
    while (found := site.offset(url)) != offset and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


@pytest.mark.server
def test_a_cut_connection_keeps_what_arrived_and_tuspy_resumes_there(site: Site, tmp_path: Path):
    dataset_id = site.dataset()
    source = random_file(tmp_path / "frames.raw", 12 * MIB + 7)
    data = source.read_bytes()
    uploader = site.uploader(
        source, chunk_size=4 * MIB, metadata=metadata(dataset_id, "frames.raw")
    )
    url = uploader.create_url()
    arrived = 5 * MIB + 12345  # not a whole block: the tail is kept too
    cut_patch(url, site.key, 0, len(data), data[:arrived])
    assert wait_for_offset(site, url, arrived) == arrived
    assert site.staged(url).stat().st_size == arrived

    resumed = site.uploader(source, url=url, chunk_size=4 * MIB)
    assert resumed.offset == arrived  # tuspy asked the server (HEAD) where to go on
    resumed.upload()
    landed = site.landed(dataset_id, "frames.raw")
    assert landed["sha256"] == sha256(source)
    assert (landed["destination"] / "frames.raw").read_bytes() == data


@pytest.mark.server
def test_a_checksum_mismatch_is_460_and_the_chunk_is_discarded(site: Site):
    dataset_id = site.dataset()
    body = os.urandom(3 * MIB)
    created = site.create(metadata(dataset_id, "checked.bin"), len(body))
    url = created.headers["Location"]
    url = urllib.parse.urljoin(site.uploads, url)
    first = body[: 2 * MIB]
    good = base64.b64encode(hashlib.sha256(first).digest()).decode()
    assert site.patch(url, 0, first, **{"Upload-Checksum": f"sha256 {good}"}).status_code == 204
    rest = body[2 * MIB :]
    wrong = base64.b64encode(hashlib.sha256(rest[::-1]).digest()).decode()
    refused = site.patch(url, 2 * MIB, rest, **{"Upload-Checksum": f"sha256 {wrong}"})
    assert refused.status_code == 460
    assert refused.json()["code"] == 460 and "discarded" in refused.json()["message"]
    assert site.offset(url) == 2 * MIB
    assert site.staged(url).stat().st_size == 2 * MIB
    sha1 = base64.b64encode(hashlib.sha1(rest).digest()).decode()
    done = site.patch(url, 2 * MIB, rest, **{"Upload-Checksum": f"sha1 {sha1}"})
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(body))
    assert site.landed(dataset_id, "checked.bin")["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.server
def test_one_connection_carries_requests_after_refused_and_accepted_bodies(site: Site):
    """Bodies are read from gunicorn's socket: the next request on a connection stays intact."""
    dataset_id = site.dataset()
    body = os.urandom(3 * MIB + 5)
    url = urllib.parse.urljoin(
        site.uploads,
        site.create(metadata(dataset_id, "kept-alive.bin"), len(body)).headers["Location"],
    )
    headers = {**site.auth, **TUS, "Content-Type": "application/offset+octet-stream"}
    with requests.Session() as session:

        def patch(offset: int, data: bytes) -> requests.Response:
            return session.patch(
                url, data=data, headers={**headers, "Upload-Offset": str(offset)}, timeout=20
            )

        assert patch(0, body[:MIB]).status_code == 204
        assert patch(5, body[MIB : 2 * MIB]).status_code == 409  # refused, its body unread
        assert patch(MIB, body[MIB : 2 * MIB]).status_code == 204
        assert session.head(url, headers={**site.auth, **TUS}, timeout=20).headers[
            "Upload-Offset"
        ] == str(2 * MIB)
        assert patch(2 * MIB, body[2 * MIB :]).status_code == 204
    assert site.landed(dataset_id, "kept-alive.bin")["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.server
def test_termination_removes_the_bytes_and_frees_the_path(site: Site):
    dataset_id = site.dataset()
    url = urllib.parse.urljoin(
        site.uploads, site.create(metadata(dataset_id, "ended.bin"), 2 * MIB).headers["Location"]
    )
    assert site.patch(url, 0, os.urandom(MIB)).status_code == 204
    assert site.staged(url).stat().st_size == MIB
    ended = requests.delete(url, headers={**site.auth, **TUS}, timeout=30)
    assert ended.status_code == 204
    assert site.head(url).status_code == 404
    assert not site.staged(url).exists()
    assert site.patch(url, MIB, b"more").status_code == 404
    assert site.create(metadata(dataset_id, "ended.bin"), 10).status_code == 201


@pytest.mark.server
def test_creation_checks_dataset_path_and_name_before_any_byte(site: Site, tmp_path: Path):
    dataset_id = site.dataset()
    other_key = site.cli.user_key("ada")
    others = site.dataset("ada's run", key=other_key)
    api = API(site.key, server_url=site.server.api)
    existing = tmp_path / "there.txt"
    existing.write_text("already uploaded through the ordflow route\n")
    api.file_upload(str(existing), dataset_id, relative_path="a")
    pending = site.create(metadata(dataset_id, "pending.bin"), 99)  # not the 100 asked below
    assert pending.status_code == 201

    cases = [
        (metadata(9999, "x.bin"), 404, "dataset 9999 not found"),
        (metadata(others, "x.bin"), 404, f"dataset {others} not found"),
        (metadata(dataset_id, "x.bin", "../up"), 400, "relative_path"),
        (metadata(dataset_id, "x.bin", "/abs"), 400, "absolute"),
        (metadata(dataset_id, ".."), 400, "file name"),
        (metadata(dataset_id, ""), 400, "file name"),
        ({"filename": "x.bin"}, 400, "dataset_id"),
        (metadata(dataset_id, "there.txt", "a"), 409, "already has a/there.txt"),
        (metadata(dataset_id, "x.bin", "a/there.txt"), 409, "is a file"),
        (metadata(dataset_id, "metadata.json"), 409, "kept by the server"),
        (metadata(dataset_id, "pending.bin"), 409, "unfinished upload"),
    ]
    for values, status, words in cases:
        answer = site.create(values, 100)
        assert answer.status_code == status, (values, answer.text)
        body = answer.json()
        assert body["code"] == status and words in body["message"], (values, body)
        assert set(body) >= {"code", "status", "message", "errors"}
        assert "Location" not in answer.headers

    too_large = site.create(metadata(dataset_id, "huge.bin"), (1 << 40) + 1)
    assert too_large.status_code == 413 and "limit" in too_large.json()["message"]
    no_version = requests.post(
        site.uploads, headers={**site.auth, "Upload-Length": "1"}, timeout=30
    )
    assert no_version.status_code == 412 and no_version.headers["Tus-Version"] == "1.0.0"
    no_key = requests.post(site.uploads, headers={**TUS, "Upload-Length": "1"}, timeout=30)
    assert no_key.status_code == 401 and no_key.json()["code"] == 401

    # tuspy sees the refusal before sending a byte.
    source = random_file(tmp_path / "x.bin", 1000)
    with pytest.raises(TusCommunicationError) as refused:
        site.uploader(source, metadata=metadata(others, "x.bin")).upload()
    assert refused.value.status_code == 404
    # Another user may neither see nor continue someone's upload.
    url = urllib.parse.urljoin(site.uploads, pending.headers["Location"])
    assert (
        requests.head(url, headers={"Authorization": f"Bearer {other_key}", **TUS}).status_code
        == 404
    )
    with pytest.raises(TusCommunicationError) as refused:
        site.uploader(source, other_key, url=url).upload()
    assert refused.value.status_code == 404
    # The ordflow route counts the unfinished upload's path as taken too.
    pending_path = tmp_path / "pending.bin"
    pending_path.write_bytes(b"x")
    answer = requests.post(
        site.server.api + "/dataset-file-upload",
        headers=site.auth,
        data={"dataset_id": str(dataset_id)},
        files={"file": ("pending.bin", b"x")},
        timeout=30,
    )
    assert answer.status_code == 409 and "unfinished upload" in answer.json()["message"]
    assert site.offset(url) == 0  # and the upload is untouched


@pytest.mark.server
def test_a_server_killed_mid_upload_resumes_at_the_exact_offset(cli: Cli, key: str, tmp_path: Path):
    # The kill may land while the dataset's first metadata.json write runs (it settles 5 s after
    # the dataset is made): a short lease lets the restarted worker resume it within the wait.
    lease = {"DATAFLOW_LITE_TRANSFER_LEASE_SECONDS": "6"}
    server = start_server(cli.instance, tmp_path / "server.log", env=lease)
    try:
        site = Site(server, cli, key)
        dataset_id = site.dataset()
        source = random_file(tmp_path / "long.raw", 150 * MIB + 99)
        data = source.read_bytes()
        url = site.uploader(source, metadata=metadata(dataset_id, "long.raw")).create_url()
        path = urllib.parse.urlsplit(url).path
        # A request still sending when the server dies: progress is made durable every 64 MiB.
        target = urllib.parse.urlsplit(url)
        connection = socket.create_connection((target.hostname, target.port))
        connection.sendall(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                f"Authorization: Bearer {key}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
        )
        connection.sendall(data[: 140 * MIB])
        assert wait_for_offset(site, url, 128 * MIB) == 128 * MIB
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        connection.close()
    finally:
        stop_server(server) if server.process.poll() is None else None

    server = start_server(cli.instance, tmp_path / "server-again.log", env=lease)
    try:
        site = Site(server, cli, key)
        url = server.api + "/uploads/" + path.rsplit("/", 1)[1]
        assert site.offset(url) == 128 * MIB  # exactly what was durable when it died
        resumed = site.uploader(source, url=url, chunk_size=8 * MIB)
        assert resumed.offset == 128 * MIB
        resumed.upload()
        landed = site.landed(dataset_id, "long.raw")
        assert landed["sha256"] == sha256(source)
        assert (landed["destination"] / "long.raw").read_bytes() == data
    finally:
        stop_server(server)


@pytest.mark.server
def test_an_expired_upload_is_refused_and_its_bytes_removed(cli: Cli, key: str, tmp_path: Path):
    # Long enough for the first PATCH to begin before it (it counts from the creation), on a busy
    # machine too; each PATCH renews it.
    expiry = 8
    env = {"DATAFLOW_LITE_RESUMABLE_UPLOAD_EXPIRY_SECONDS": str(expiry)}
    server = start_server(cli.instance, tmp_path / "server.log", env=env)
    try:
        site = Site(server, cli, key)
        dataset_id = site.dataset()
        created = site.create(metadata(dataset_id, "late.bin"), 2 * MIB)
        assert created.status_code == 201
        assert "Upload-Expires" in created.headers
        url = urllib.parse.urljoin(site.uploads, created.headers["Location"])
        assert site.patch(url, 0, os.urandom(MIB)).status_code == 204
        staged = site.staged(url)
        assert staged.stat().st_size == MIB
        time.sleep(expiry + 1)  # past the expiry the PATCH's end renewed
        assert site.head(url).status_code == 404
        assert site.patch(url, MIB, b"late").status_code == 404
        # Its path is free again at once, though the sweep has not run yet.
        assert site.create(metadata(dataset_id, "late.bin"), 10).status_code == 201
    finally:
        stop_server(server)
    # The transfer worker's sweep (at start-up, and every minute) removes the bytes.
    server = start_server(cli.instance, tmp_path / "server-again.log", env=env)
    try:
        deadline = time.monotonic() + 120  # the worker starts after the web server answers
        while staged.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not staged.exists()
    finally:
        stop_server(server)


def test_the_sweeps_remove_expired_uploads_only(instance: Path, key: str):
    """The sweeps' own functions, on a real catalog and staging area (no server needed)."""
    rt = bootstrap.build(instance)
    with session_scope(rt.engine) as session:
        user = session.exec(select(User)).one()
        endpoint = session.exec(select(Endpoint)).first()
        dataset = Dataset(name="d", creator_id=user.id, endpoint_id=endpoint.id, folder="f")
        session.add(dataset)
        session.flush()
        for upload_id, expires in (("old", -10), ("new", 3600)):
            session.add(
                ResumableUpload(
                    id=upload_id,
                    user_id=user.id,
                    dataset_id=dataset.id,
                    name=upload_id,
                    length=10,
                    expires_at=utcnow() + timedelta(seconds=expires),
                )
            )
    staging = rt.adapters.context.staging_dir
    for upload_id in ("old", "new", "gone"):
        (staging / layout.resumable_staged_name(upload_id)).write_bytes(b"12345")
    removed = remove_expired_uploads(rt.engine, staging)
    assert removed == ["removed upload old: it expired before its last byte arrived"]
    assert not (staging / layout.resumable_staged_name("old")).exists()
    # The start-up sweep keeps an unfinished upload's bytes, and removes bytes nobody names.
    assert len(remove_stale_staged_files(rt.engine, staging)) == 1
    assert not (staging / layout.resumable_staged_name("gone")).exists()
    assert (staging / layout.resumable_staged_name("new")).read_bytes() == b"12345"
    with session_scope(rt.engine, write=False) as session:
        assert [row.id for row in session.exec(select(ResumableUpload))] == ["new"]


@pytest.mark.parametrize("hash_kept", [True, False], ids=["same-worker", "another-worker"])
def test_an_upload_through_another_wsgi_server_reads_the_request_stream(
    app, auth, monkeypatch, hash_kept
):
    """Outside gunicorn (here Werkzeug's test client) the body is read through request.stream.

    Another worker (no hash of the bytes so far) finishes by reading the staged bytes again,
    though the writer left them open past the page cache (O_DIRECT, whole blocks only).
    """
    if not hash_kept:
        forgetful = lambda upload_id, offset: hashlib.sha256() if offset == 0 else None  # noqa: E731
        monkeypatch.setattr(tus_route._hashes, "take", forgetful)
    client = app.test_client()
    dataset_id = client.post("/api/v1/datasets", json={"name": "d"}, headers=auth).json["id"]
    body = os.urandom(8 * MIB)  # two whole blocks of the writer
    created = client.post(
        "/api/v1/uploads/",
        headers={
            **auth,
            **TUS,
            "Upload-Length": str(len(body)),
            "Upload-Metadata": encoded(metadata(dataset_id, "plain.bin")),
        },
    )
    assert created.status_code == 201, created.json
    url = created.headers["Location"]
    for offset in (0, 4 * MIB):
        sent = client.patch(
            url,
            data=body[offset : offset + 4 * MIB],
            headers={
                **auth,
                **TUS,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert sent.status_code == 204, sent.json
    shown = client.get(f"/api/v1/datasets/{dataset_id}", headers=auth).json
    (entry,) = [f for f in shown["dataset_files"] if f["name"] == "plain.bin"]
    assert entry["sha256"] == hashlib.sha256(body).hexdigest()
    assert entry["transfer_state"] == "done"
    assert (Path(shown["destination"]) / "plain.bin").read_bytes() == body


def test_a_409_names_the_users_own_unfinished_upload_of_the_same_file(app, auth, cli):
    """A client that lost its upload's URL (killed between creating it and keeping the answer)
    gets it back from the 409; another user, or another length, is refused plainly."""
    client = app.test_client()
    dataset_id = client.post("/api/v1/datasets", json={"name": "d"}, headers=auth).json["id"]

    def create(headers: dict[str, str], length: int):
        return client.post("/api/v1/uploads/", headers={
            **headers, **TUS, "Upload-Length": str(length),
            "Upload-Metadata": encoded(metadata(dataset_id, "frame.raw")),
        })  # fmt: skip

    first = create(auth, 10)
    assert first.status_code == 201
    again = create(auth, 10)
    assert again.status_code == 409 and again.headers["Location"] == first.headers["Location"]
    assert "yours" in again.json["message"]
    longer = create(auth, 11)
    assert longer.status_code == 409 and "Location" not in longer.headers
    admin = {"Authorization": "Bearer " + cli.user_key("eve", admin=True)}  # sees every dataset
    other = create(admin, 10)
    assert other.status_code == 409 and "Location" not in other.headers
    assert "unfinished upload of frame.raw" in other.json["message"]
