"""The ordflow walkthrough against an SSH host, and a server killed in the middle of a transfer.

Both run the real server (gunicorn and its transfer worker) and a real sshd on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from ordflow import API
from requests_toolbelt import MultipartEncoder

from .conftest import start_server, stop_server, wait_for_transfers
from .sshd import remote_base, ssh_user, sshd  # noqa: F401  (fixtures)

pytestmark = pytest.mark.server


def add_sftp_endpoint(cli, sshd, ssh_user, remote_base, **extra: str) -> dict:  # noqa: F811
    options = [f"--{key.replace('_', '-')}={value}" for key, value in extra.items()]
    return cli.json(
        "endpoint", "add", "beamline-store", "--type", "sftp",
        "--host", "127.0.0.1", "--port", str(sshd.port), "--username", ssh_user.name,
        "--path", remote_base.option, "--known-hosts", str(sshd.known_hosts), *options,
    )  # fmt: skip


def test_walkthrough_to_an_ssh_host_with_activation(
    live_server,
    cli,
    tmp_path: Path,
    sshd,  # noqa: F811
    ssh_user,  # noqa: F811
    remote_base,  # noqa: F811
):
    key = cli.user_key("suhas", name="Suhas Somnath")
    endpoint = add_sftp_endpoint(cli, sshd, ssh_user, remote_base)
    api = API(key, server_url=live_server.api)

    settings = api.settings_set("globus.destination_endpoint", endpoint["id"])
    assert settings == {
        "globus": {"destination_endpoint": endpoint["id"]},
        "transport": {"protocol": "sftp"},
    }
    assert api.settings_set("transport.protocol", "sftp")["transport"]["protocol"] == "sftp"

    # No credentials yet: the live login fails, then activation with an encrypted password.
    before = api.globus_endpoints_active()["destination_activation"]
    assert before["code"] == "AutoActivationFailed"
    with pytest.raises(ValueError, match="refused activation"):
        api.globus_endpoints_activate(ssh_user.name, "wrong password", encrypted=False)
    encrypted = requests.post(
        live_server.api + "/password-encryption",
        json={"password": ssh_user.password},
        headers={"Authorization": f"Bearer {key}"},
    ).json()["encrypted_password"]
    assert api.globus_endpoints_activate(ssh_user.name, encrypted) == {"status": "ok"}
    assert api.globus_endpoints_active()["destination_activation"]["code"] == "AlreadyActivated"

    dataset = api.dataset_create(
        "Beamline scan", metadata={"Sample": "PZT", "Beam": {"Energy": 12.4}}
    )
    first = tmp_path / "frame_0001.tiff"
    first.write_bytes(os.urandom(300_000))
    second = tmp_path / "notes.txt"
    second.write_text("alignment ok\n")
    sent = [
        api.file_upload(str(first), dataset["id"]),
        api.file_upload(str(second), dataset["id"], relative_path="foo/bar"),
    ]
    assert {upload["transport"] for upload in sent} == {"sftp"}
    transfers = wait_for_transfers(live_server.api, key, dataset["id"])
    assert {t["state"] for t in transfers} == {"done"}, transfers

    info = api.dataset_info(dataset["id"])
    created = info["created_at"]
    folder = remote_base.path.joinpath(
        "untitled_instrument", created[:10], created[11:19].replace(":", "") + "_beamline_scan"
    )
    assert info["destination"].startswith(f"sftp://{ssh_user.name}@127.0.0.1:{sshd.port}/")
    assert (folder / "frame_0001.tiff").read_bytes() == first.read_bytes()
    assert (folder / "foo" / "bar" / "notes.txt").read_bytes() == second.read_bytes()
    document = json.loads((folder / "metadata.json").read_text())
    assert document["dataset"]["metadata"] == {"Sample": "PZT", "Beam": {"Energy": 12.4}}
    assert sorted((f["path"], f["sha256"]) for f in document["files"]) == [
        ("foo/bar/notes.txt", hashlib.sha256(second.read_bytes()).hexdigest()),
        ("frame_0001.tiff", hashlib.sha256(first.read_bytes()).hexdigest()),
    ]
    assert [f["transfer_state"] for f in info["dataset_files"] if not f["is_directory"]] == [
        "done",
        "done",
    ]


def test_a_transfer_cut_by_kill_9_resumes_after_restart_without_a_second_copy(
    cli,
    instance: Path,
    tmp_path: Path,
    sshd,  # noqa: F811
    ssh_user,  # noqa: F811
    remote_base,  # noqa: F811
):
    # A short lease, so the restarted worker takes over the orphaned transfer within seconds.
    env = {"DATAFLOW_LITE_TRANSFER_LEASE_SECONDS": "3"}
    key = cli.user_key("suhas")
    endpoint = add_sftp_endpoint(cli, sshd, ssh_user, remote_base, key_file=ssh_user.key_file)
    headers = {"Authorization": f"Bearer {key}"}
    big = tmp_path / "tomogram.raw"
    with big.open("wb") as out:
        for _ in range(768):
            out.write(os.urandom(1 << 20))
    server = start_server(instance, tmp_path / "server-1.log", env=env)
    try:
        setting = f"setting=globus.destination_endpoint&value={endpoint['id']}"
        requests.post(f"{server.api}/user-settings/?{setting}", headers=headers).raise_for_status()
        dataset = requests.post(
            server.api + "/datasets", json={"name": "interrupted"}, headers=headers
        ).json()
        with big.open("rb") as handle:
            encoder = MultipartEncoder(
                {"dataset_id": str(dataset["id"]), "file": (big.name, handle)}
            )
            sent = requests.post(
                server.api + "/dataset-file-upload",
                data=encoder,
                headers={**headers, "Content-Type": encoder.content_type},
            ).json()
        url = f"{server.api}/transfers/{sent['transfer_id']}"
        deadline = time.monotonic() + 30
        while requests.get(url, headers=headers).json()["state"] != "running":
            assert time.monotonic() < deadline, "the transfer never started"
            time.sleep(0.02)
        time.sleep(0.3)  # some bytes on their way
    finally:
        os.killpg(server.process.pid, signal.SIGKILL)  # the whole server, as a crash would
        server.process.wait()
    landed = remote_base.landed(sent["destination"].split(f"/{remote_base.option}/", 1)[1])
    assert not landed.exists(), "the transfer finished before the kill: nothing was interrupted"

    server = start_server(instance, tmp_path / "server-2.log", env=env)
    try:
        transfers = wait_for_transfers(server.api, key, dataset["id"], seconds=120)
    finally:
        stop_server(server)
    moved = [t for t in transfers if t["kind"] == "file"]
    assert [(t["state"], t["last_error"]) for t in moved] == [("done", None)]
    assert hashlib.sha256(landed.read_bytes()).hexdigest() == sent["sha256"]
    assert sorted(p.name for p in landed.parent.iterdir() if p.is_file()) == sorted(
        [big.name, "metadata.json"]
    )
    assert list((instance / "staging").iterdir()) == []
