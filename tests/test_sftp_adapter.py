"""The rsync/SFTP adapter against a real OpenSSH sshd on 127.0.0.1 (see ``tests/sshd.py``).

Each test looks where a user would: at the bytes in the account's home on the host, and at the
words and the ``permanent`` flag of the errors the transfer queue would record.
"""

# The fixtures come from tests/sshd.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import dataflow_lite_sftp.rsync as rsync_module
import pytest
from dataflow_lite_sftp import SftpAdapter
from dataflow_lite_sftp.host import HostSession, Login, open_session
from dataflow_lite_sftp.sftp import partial_name, readback_sha256

from dataflow_lite.adapter import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    DONE,
    AdapterError,
    Cancelled,
    Credentials,
    DestinationExists,
    TransferJob,
    discover_adapters,
)

from .sshd import (  # noqa: F401  (fixtures)
    RemoteBase,
    Sshd,
    SshUser,
    lagging_stderr_sshd,
    make_adapter,
    make_job,
    make_key,
    old_rsync_sshd,
    remote_base,
    sftp_only_sshd,
    ssh_user,
    sshd,
)


def landed_bytes(remote_base: RemoteBase, job: TransferJob) -> bytes:
    return remote_base.landed(job.target).read_bytes()


def hidden_files(folder: Path) -> list[str]:
    """Names under ``folder`` (recursively) that start with a dot, as a user's ``ls -a`` shows."""
    return sorted(
        str(path.relative_to(folder)) for path in folder.rglob(".*") if path.name not in (".", "..")
    )


def test_a_file_moves_by_rsync_with_the_key_file(sshd, make_adapter, make_job, remote_base):
    adapter = make_adapter(sshd)
    job = make_job("2024-05-01_run/raw/scan 01.h5", size=3 << 20)

    handle = adapter.submit(job)

    assert handle == "rsync"
    assert landed_bytes(remote_base, job) == job.staged.read_bytes()
    assert job.staged.exists(), "the queue deletes the staged file, not the adapter"
    assert hidden_files(remote_base.path) == [], "nothing partial is left beside the file"
    assert adapter.status(job, handle).state == DONE
    assert adapter.verify(job, handle) is True


def test_a_file_moves_with_activated_password_credentials(
    sshd, make_adapter, make_job, remote_base, ssh_user, tmp_path
):
    adapter = make_adapter(sshd, key_file=None)
    credentials = adapter.activate(ssh_user.name, ssh_user.password)
    job = make_job("dataset/notes.txt", b"measured at 4 K\n", credentials=credentials)

    assert adapter.submit(job) == "rsync"

    assert landed_bytes(remote_base, job) == b"measured at 4 K\n"
    assert adapter.verify(job, "rsync") is True
    # The password reached ssh through the environment: no file of the instance holds it.
    secret = ssh_user.password.encode()
    leftovers = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert all(secret not in path.read_bytes() for path in leftovers)
    assert not list(tmp_path.glob(".askpass-*"))


def test_verify_fails_once_the_landed_file_is_altered(sshd, make_adapter, make_job, remote_base):
    adapter = make_adapter(sshd)
    job = make_job("ds/data.bin", size=1 << 20)
    handle = adapter.submit(job)
    assert adapter.verify(job, handle) is True

    landed = remote_base.landed(job.target)
    data = bytearray(landed.read_bytes())
    data[1000] ^= 0xFF
    landed.write_bytes(bytes(data))

    assert adapter.verify(job, handle) is False
    landed.unlink()
    assert adapter.verify(job, handle) is False


def test_an_existing_different_file_is_never_replaced(
    sshd, make_adapter, make_job, remote_base, ssh_user
):
    adapter = make_adapter(sshd)
    job = make_job("ds/result.csv", b"new,bytes\n")
    landed = remote_base.landed(job.target)
    landed.parent.mkdir()
    landed.write_bytes(b"somebody else's file\n")

    with pytest.raises(DestinationExists) as raised:
        adapter.submit(job)

    assert raised.value.permanent
    assert "ds/result.csv already exists" in str(raised.value)
    assert landed.read_bytes() == b"somebody else's file\n"


def test_a_retried_submit_after_success_succeeds_without_a_second_copy(
    sshd, make_adapter, make_job, remote_base
):
    adapter = make_adapter(sshd)
    job = make_job("ds/frame.tif", size=256 << 10)
    adapter.submit(job)
    landed = remote_base.landed(job.target)
    first = landed.stat()

    assert adapter.submit(job) == "rsync"

    again = landed.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert sorted(os.listdir(landed.parent)) == ["frame.tif"]


def wait_for(condition, what: str, seconds: float = 30):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it returns something true; fail naming ``what`` after a while."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.002)
    pytest.fail(f"gave up waiting for {what}")


def test_sshd_killed_mid_transfer_is_transient_and_the_retry_resumes(
    sshd: Sshd, make_adapter, make_job, remote_base
):
    adapter = make_adapter(sshd)
    job = make_job("ds/big.raw", size=256 << 20)
    landed = remote_base.landed(job.target)

    def arriving() -> Path | None:
        # rsync writes into a hidden temporary file beside the target while bytes arrive.
        temporary = list(landed.parent.glob(".big.raw.*")) if landed.parent.exists() else []
        return next((path for path in temporary if path.stat().st_size >= 16 << 20), None)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(adapter.submit, job)
        wait_for(arriving, "rsync to write 16 MiB")
        sshd.kill()
        with pytest.raises(AdapterError) as raised:
            running.result(timeout=60)

    assert not raised.value.permanent, str(raised.value)
    assert "connection" in str(raised.value)
    partial = landed.parent / ".rsync-partial" / "big.raw"
    wait_for(partial.exists, "the host's rsync to keep its partial file")
    assert 0 < partial.stat().st_size < job.size
    assert not landed.exists(), "nothing partial under the final name"

    sshd.start()  # the same port and host key: the host came back
    assert adapter.submit(job) == "rsync"

    assert landed_bytes(remote_base, job) == job.staged.read_bytes()
    assert not partial.parent.exists()
    assert adapter.verify(job, "rsync") is True


@pytest.fixture
def slow_rsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """rsync limited to 4 MiB/s (``--bwlimit``), so that a transfer is still running when cut."""
    popen = subprocess.Popen

    def limited(command: list[str], *args: object, **kwargs: object) -> subprocess.Popen:
        if command[0] == "rsync":
            command = [command[0], "--bwlimit=4096", *command[1:]]
        return popen(command, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(rsync_module.subprocess, "Popen", limited)


def test_a_cancelled_rsync_stops_and_leaves_nothing_partial_on_the_host(
    sshd, make_adapter, make_job, remote_base, slow_rsync
):
    adapter = make_adapter(sshd)
    job = make_job("ds/slow.raw", size=64 << 20)  # 16 s at 4 MiB/s
    reported: list[int] = []
    job.progress = reported.append

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(adapter.submit, job)
        wait_for(lambda: reported and reported[-1] >= 4 << 20, "rsync to report 4 MiB", 60)
        job.cancelled.set()
        with pytest.raises(Cancelled):
            running.result(timeout=60)

    assert reported == sorted(reported) and reported[-1] < job.size, "progress, as it went"
    landed = remote_base.landed(job.target)
    assert not landed.exists()
    assert hidden_files(remote_base.path) == [], "no temporary, no .rsync-partial resume state"


def test_a_host_with_an_rsync_older_than_mkpath_gets_its_folders_all_the_same(
    old_rsync_sshd, make_adapter, make_job, remote_base
):
    adapter = make_adapter(old_rsync_sshd)
    job = make_job("ds/deep/er/file.dat", size=64 << 10)

    assert adapter.submit(job) == "rsync"

    # --relative makes the folders, with any rsync: --mkpath is never asked for.
    assert not old_rsync_sshd.host_log.exists()
    assert landed_bytes(remote_base, job) == job.staged.read_bytes()
    assert adapter.verify(job, "rsync") is True


def test_a_wrong_password_is_refused_permanently_in_plain_words(
    sshd, make_adapter, make_job, ssh_user, remote_base
):
    adapter = make_adapter(sshd, key_file=None)

    with pytest.raises(AdapterError) as raised:
        adapter.activate(ssh_user.name, "not-the-password")
    assert raised.value.permanent
    assert str(raised.value) == (
        f"[127.0.0.1]:{sshd.port} refused the login of {ssh_user.name}: "
        "wrong password or unknown user"
    )

    job = make_job("ds/a.txt", b"a\n", credentials=Credentials(ssh_user.name, "stale"))
    with pytest.raises(AdapterError) as raised:
        adapter.submit(job)
    assert raised.value.permanent
    assert "wrong password" in str(raised.value)
    assert not remote_base.landed(job.target).exists()


def test_a_key_the_host_does_not_know_is_refused_permanently(
    sshd, make_adapter, make_job, make_key, tmp_path
):
    stranger = tmp_path / "stranger_ed25519"
    make_key(stranger)
    adapter = make_adapter(sshd, key_file=str(stranger))

    with pytest.raises(AdapterError) as raised:
        adapter.submit(make_job("ds/a.txt", b"a\n"))

    assert raised.value.permanent
    assert "the key is not in its authorized_keys" in str(raised.value)


@pytest.mark.parametrize("server", ["sshd", "lagging_stderr_sshd"])
def test_a_destination_the_account_cannot_write_is_a_permanent_error(
    request, server, make_adapter, make_job, remote_base
):
    # On a loaded host rsync's words may come after its exit code (lagging_stderr_sshd makes
    # it so every time): they are waited for, never lost, so the error is permanent each run.
    adapter = make_adapter(request.getfixturevalue(server))
    remote_base.path.chmod(0o555)  # sshd's user is not root: permissions apply to it
    try:
        # A new dataset folder cannot be created...
        with pytest.raises(AdapterError) as raised:
            adapter.submit(make_job("ds/a.txt", b"a\n"))
        assert raised.value.permanent
        assert "permission denied on the host" in str(raised.value)
        assert "mkdir" in str(raised.value)

        # ...nor a file written where rsync itself is refused.
        with pytest.raises(AdapterError) as raised:
            adapter.submit(make_job("top-level.txt", b"a\n"))
        assert raised.value.permanent
        assert "permission denied on the host" in str(raised.value)
    finally:
        remote_base.path.chmod(0o755)
    assert os.listdir(remote_base.path) == []


@pytest.fixture
def small_disk(remote_base: RemoteBase, ssh_user: SshUser):  # type: ignore[no-untyped-def]
    """A 4 MiB tmpfs mounted at the base path, owned by the test user."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(remote_base.path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        ssh_user.chown(remote_base.path)
        yield remote_base.path
    finally:
        subprocess.run(["umount", str(remote_base.path)], check=True)


def test_a_full_disk_is_a_permanent_no_space_error(sshd, make_adapter, make_job, small_disk):
    adapter = make_adapter(sshd)
    job = make_job("ds/too-big.raw", size=8 << 20)

    with pytest.raises(AdapterError) as raised:
        adapter.submit(job)

    assert raised.value.permanent
    assert "no space left" in str(raised.value)
    assert not (small_disk / "ds" / "too-big.raw").exists()
    # The partial data would only keep the disk full: it is removed.
    assert shutil.disk_usage(small_disk).used < 1 << 20


def test_a_full_disk_behind_an_sftp_only_host_is_a_permanent_no_space_error(
    sftp_only_sshd, make_adapter, make_job, small_disk
):
    adapter = make_adapter(sftp_only_sshd)
    job = make_job("ds/too-big.raw", size=8 << 20)

    with pytest.raises(AdapterError) as raised:
        adapter.submit(job)

    assert raised.value.permanent
    assert "no space left" in str(raised.value)
    assert not (small_disk / "ds" / "too-big.raw").exists()
    assert shutil.disk_usage(small_disk).used < 1 << 20


def test_a_changed_host_key_is_refused_permanently(
    sshd, make_adapter, make_job, make_key, tmp_path
):
    adapter = make_adapter(sshd)
    impostor = make_key(tmp_path / "impostor_ed25519")
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {impostor}\n")

    with pytest.raises(AdapterError) as raised:
        adapter.submit(make_job("ds/a.txt", b"a\n"))

    assert raised.value.permanent
    assert str(raised.value).startswith(
        f"host key of [127.0.0.1]:{sshd.port} does not match known_hosts {sshd.known_hosts}: "
        "refusing to connect"
    )


def test_an_unknown_host_key_is_refused_permanently(sshd, make_adapter, make_job, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    adapter = make_adapter(sshd, known_hosts=str(empty))

    with pytest.raises(AdapterError) as raised:
        adapter.submit(make_job("ds/a.txt", b"a\n"))

    assert raised.value.permanent
    assert f"host key of [127.0.0.1]:{sshd.port} is not in known_hosts {empty}" in str(raised.value)
    activation = adapter.activation(None)
    assert activation.code == ACTIVATION_FAILED
    assert "is not in known_hosts" in activation.message


def test_known_hosts_defaults_to_the_instance_folder(sshd, make_adapter, make_job, tmp_path):
    shutil.copy(sshd.known_hosts, tmp_path / "known_hosts")
    adapter = make_adapter(sshd, known_hosts=None)

    assert adapter.known_hosts == tmp_path / "known_hosts"
    assert adapter.submit(make_job("ds/a.txt", b"a\n")) == "rsync"


def test_a_missing_base_path_is_a_permanent_error(sshd, make_adapter, make_job, ssh_user):
    adapter = make_adapter(sshd, path="no-such-folder")

    with pytest.raises(AdapterError) as raised:
        adapter.submit(make_job("ds/a.txt", b"a\n"))

    assert raised.value.permanent
    assert "the base path no-such-folder does not exist" in str(raised.value)
    assert not (ssh_user.home / "no-such-folder").exists(), "the base path is never created"


def test_a_host_that_refuses_connections_is_a_transient_error(sshd, make_adapter, make_job):
    adapter = make_adapter(sshd)
    sshd.kill()

    with pytest.raises(AdapterError) as raised:
        adapter.submit(make_job("ds/a.txt", b"a\n"))

    assert not raised.value.permanent
    assert f"connection to [127.0.0.1]:{sshd.port} refused" in str(raised.value)


def test_an_sftp_only_host_gets_the_file_by_sftp_and_verified_by_reading_back(
    sftp_only_sshd, make_adapter, make_job, remote_base, caplog
):
    adapter = make_adapter(sftp_only_sshd, path=str(remote_base.path))
    job = make_job("ds/sub/image.png", size=5 << 20)
    caplog.set_level(logging.WARNING, logger="dataflow_lite_sftp")

    handle = adapter.submit(job)

    assert handle == "sftp"
    assert landed_bytes(remote_base, job) == job.staged.read_bytes()
    assert hidden_files(remote_base.path) == []
    caplog.clear()
    assert adapter.verify(job, handle) is True
    assert "no exec channel (SFTP only): checking" in caplog.text
    assert "reading it back over SFTP" in caplog.text
    assert adapter.submit(job) == "sftp", "a retry after success finds the file in place"

    landed = remote_base.landed(job.target)
    held = landed.read_bytes()
    landed.write_bytes(held[:-1] + bytes([held[-1] ^ 0xFF]))  # its last byte changed, size kept
    assert adapter.verify(job, handle) is False
    with pytest.raises(DestinationExists):
        adapter.submit(job)


def test_an_sftp_only_upload_resumes_its_hidden_partial_file(
    sftp_only_sshd, make_adapter, make_job, remote_base, ssh_user
):
    adapter = make_adapter(sftp_only_sshd)
    job = make_job("ds/resumed.bin", size=2 << 20)
    landed = remote_base.landed(job.target)
    landed.parent.mkdir()
    ssh_user.chown(landed.parent)
    # What an interrupted attempt left: the first half, under a hidden name.
    partial = remote_base.landed(partial_name(str(job.target), job.sha256))
    partial.write_bytes(job.staged.read_bytes()[: 1 << 20])
    ssh_user.chown(partial)

    assert adapter.submit(job) == "sftp"

    assert landed.read_bytes() == job.staged.read_bytes()
    assert not partial.exists()
    assert adapter.verify(job, "sftp") is True


def test_every_hashing_tool_on_the_host_agrees(sshd, make_adapter, make_job, ssh_user):
    adapter = make_adapter(sshd)
    job = make_job("ds/hashed.bin", size=3 << 20)
    adapter.submit(job)
    path = adapter._remote(job.target)
    login = Login(ssh_user.name, key_file=ssh_user.key_file)

    with open_session("127.0.0.1", sshd.port, login, adapter._where) as session:
        tools = session.capabilities().tools
        assert {"python3", "openssl", "sha256sum"} <= tools
        for hasher in ("python3", "openssl", "sha256sum"):
            assert session.sha256(path, hasher, job.size) == job.sha256, hasher
        assert readback_sha256(session, path) == job.sha256


def test_activation_needs_a_live_login(sshd, make_adapter, ssh_user):
    with_key = make_adapter(sshd)
    assert with_key.activation(None).code == ALREADY_ACTIVATED

    without_key = make_adapter(sshd, key_file=None)
    good = without_key.activation(Credentials(ssh_user.name, ssh_user.password))
    assert good.code == ALREADY_ACTIVATED
    bad = without_key.activation(Credentials(ssh_user.name, "guess"))
    assert bad.code == ACTIVATION_FAILED
    assert f"refused the login of {ssh_user.name}: wrong password" in bad.message
    nothing = without_key.activation(None)
    assert nothing.code == ACTIVATION_FAILED
    assert "activate the endpoint with the account's password" in nothing.message

    sshd.kill()
    down = with_key.activation(None)
    assert down.code == ACTIVATION_FAILED
    assert "refused" in down.message


def test_activate_returns_the_credentials_and_stores_nothing_itself(
    sshd, make_adapter, ssh_user, tmp_path
):
    adapter = make_adapter(sshd, key_file=None)
    before = sorted(tmp_path.rglob("*"))
    known_hosts = sshd.known_hosts.read_text()

    kept = adapter.activate(ssh_user.name, ssh_user.password)

    assert kept == Credentials(ssh_user.name, ssh_user.password)
    assert sorted(tmp_path.rglob("*")) == before
    assert sshd.known_hosts.read_text() == known_hosts


def test_check_reports_each_line(sshd, make_adapter, ssh_user, remote_base):
    checks = {check.name: check for check in make_adapter(sshd).check(None)}

    assert list(checks) == ["reachable", "authenticated", "writable", "free space"]
    assert all(check.ok for check in checks.values()), checks
    assert checks["authenticated"].detail.startswith(f"as {ssh_user.name} with key")
    assert "GiB free" in checks["free space"].detail
    assert os.listdir(remote_base.path) == [], "the test file is removed"

    refused = {c.name: c for c in make_adapter(sshd, key_file=None).check(Credentials("x", "y"))}
    assert refused["reachable"].ok and not refused["authenticated"].ok

    missing = {c.name: c for c in make_adapter(sshd, path="gone").check(None)}
    assert not missing["writable"].ok
    assert "does not exist" in missing["writable"].detail

    sshd.kill()
    assert [(c.name, c.ok) for c in make_adapter(sshd).check(None)] == [("reachable", False)]


def test_write_file_replaces_metadata_atomically(sshd, sftp_only_sshd, make_adapter, remote_base):
    target = PurePosixPath("ds/metadata.json")
    for server, content in ((sshd, b'{"v": 1}'), (sftp_only_sshd, b'{"v": 2}')):
        make_adapter(server).write_file(target, content, None)
        assert remote_base.landed(target).read_bytes() == content
    assert os.listdir(remote_base.landed(target).parent) == ["metadata.json"]
    assert oct(remote_base.landed(target).stat().st_mode & 0o777) == "0o644"


def test_locate_gives_an_sftp_url(sshd, make_adapter, ssh_user, remote_base):
    target = PurePosixPath("ds/raw/a.h5")
    relative = make_adapter(sshd).locate(target)
    absolute = make_adapter(sshd, path=str(remote_base.path)).locate(target)

    port = sshd.port
    assert relative == f"sftp://{ssh_user.name}@127.0.0.1:{port}/~/{remote_base.option}/ds/raw/a.h5"
    assert absolute == f"sftp://{ssh_user.name}@127.0.0.1:{port}{remote_base.path}/ds/raw/a.h5"


def test_the_adapter_is_found_by_its_entry_point():
    assert discover_adapters()["sftp"] is SftpAdapter


def test_endpoint_options_are_checked():
    options = {"host": "store", "port": "22", "username": "lab", "path": "/data/"}
    assert SftpAdapter.check_options(options)["port"] == 22
    assert SftpAdapter.check_options(options)["path"] == "/data"
    with pytest.raises(ValueError, match="--port"):
        SftpAdapter.check_options({**options, "port": "ssh"})
    with pytest.raises(ValueError, match="without ~"):
        SftpAdapter.check_options({**options, "path": "~/data"})
    with pytest.raises(ValueError, match="--host"):
        SftpAdapter.check_options({**options, "host": ""})


@pytest.mark.parametrize("name", ["d*", "a?", "a;touch PWNED;b", "sp ace $(x) 'q'", "x?[a]"])
def test_names_that_a_shell_would_read_land_literally(
    sshd, ssh_user, make_adapter, make_job, remote_base, name
):
    adapter = make_adapter(sshd)
    data = remote_base.path / "data"
    data.mkdir()
    ssh_user.chown(data)
    ssh_user_owned = data / "dx"
    ssh_user_owned.write_bytes(b"already here")  # a glob like d* would otherwise match it
    job = make_job(f"data/{name}", content=b"measured")

    handle = adapter.submit(job)

    assert (remote_base.path / "data" / name).read_bytes() == b"measured"
    assert ssh_user_owned.read_bytes() == b"already here"
    assert not list(remote_base.path.rglob("PWNED"))
    assert adapter.verify(job, handle) is True


@pytest.fixture
def neighbours_folder(ssh_user: SshUser):  # type: ignore[no-untyped-def]
    """A folder the account may write in, outside the endpoint: where planted links point."""
    path = ssh_user.home / f"outside-{os.urandom(3).hex()}"
    path.mkdir()
    ssh_user.chown(path)
    (path / "authorized_keys").write_bytes(b"the neighbour's key")
    ssh_user.chown(path / "authorized_keys")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("base", ["absolute", "relative"])
@pytest.mark.parametrize("server", ["sshd", "sftp_only_sshd"])
@pytest.mark.parametrize("planted", ["ds", "ds/raw", "ds/raw/authorized_keys"])
def test_a_link_planted_at_the_destination_is_refused_not_followed(
    request, server, planted, base, make_adapter, make_job, remote_base, neighbours_folder
):
    # A relative base is below the account's home: the host's shell names its paths ./base/...
    path = str(remote_base.path) if base == "absolute" else remote_base.option
    adapter = make_adapter(request.getfixturevalue(server), path=path)
    job = make_job("ds/raw/authorized_keys", content=b"ssh-ed25519 AAAA... an intruder")
    link = remote_base.landed(planted)
    link.parent.mkdir(parents=True, exist_ok=True)
    if planted.endswith("authorized_keys"):
        link.symlink_to(neighbours_folder / "authorized_keys")
    else:
        link.symlink_to(neighbours_folder, target_is_directory=True)

    with pytest.raises(AdapterError) as refused:
        adapter.submit(job)

    assert refused.value.permanent
    assert str(refused.value).startswith(f"{path}/{planted} on [127.0.0.1]:")
    assert str(refused.value).endswith(
        "is a symbolic link: links at the destination are never followed"
    )
    assert sorted(p.name for p in neighbours_folder.iterdir()) == ["authorized_keys"]
    assert (neighbours_folder / "authorized_keys").read_bytes() == b"the neighbour's key"
    if planted == "ds":
        with pytest.raises(AdapterError, match="is a symbolic link") as refused:
            adapter.write_file(PurePosixPath("ds/metadata.json"), b"{}", None)
        assert sorted(p.name for p in neighbours_folder.iterdir()) == ["authorized_keys"]


def test_a_batch_of_300_files_is_one_rsync_and_one_hash_pass_and_fails_per_file(
    sshd, make_adapter, make_job, remote_base, ssh_user, monkeypatch
):
    adapter = make_adapter(sshd)
    jobs = [make_job(f"ds/frames/f{n:03}.bin", size=64 << 10) for n in range(299)]
    # One file goes to a folder of another account (root's) that the account may not write in
    # (in a folder of its own, rsync would lend itself the write permission).
    locked = remote_base.landed("ds/locked")
    locked.mkdir(parents=True)
    ssh_user.chown(locked.parent)
    locked.chmod(0o555)
    refused = make_job("ds/locked/sub/f.bin", size=64 << 10)
    jobs.insert(150, refused)
    runs: list[list[str]] = []
    popen = subprocess.Popen

    def counted(command: list[str], *args: object, **kwargs: object) -> subprocess.Popen:
        if command[0] == "rsync":
            runs.append(command)
        return popen(command, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(rsync_module.subprocess, "Popen", counted)
    try:
        outcomes = adapter.submit_batch(jobs)
    finally:
        locked.chmod(0o755)

    assert len(runs) == 1, "one rsync (one ssh connection) for the whole batch"
    failed = outcomes.pop(150)
    assert isinstance(failed, AdapterError) and failed.permanent
    assert "permission denied on the host" in str(failed)
    assert "ds/locked" in str(failed)
    assert outcomes == ["rsync"] * 299
    landed = [job for job in jobs if job is not refused]
    assert all(landed_bytes(remote_base, job) == job.staged.read_bytes() for job in landed)
    assert not remote_base.landed(refused.target).exists()
    assert hidden_files(remote_base.path) == []
    assert not list(jobs[0].staged.parent.glob(".rsync-batch-*")), "the link tree is gone"

    hashed: list[str] = []
    run = HostSession.run

    def counted_run(session: HostSession, command: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        hashed.append(command)
        return run(session, command, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(HostSession, "run", counted_run)
    assert adapter.verify_batch(landed, ["rsync"] * 299) == [True] * 299
    assert len([command for command in hashed if "hashlib" in command]) == 1
