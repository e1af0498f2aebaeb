"""dataflow-agent: push, watch, receipts and clean, against a real server (gunicorn) over tus.

The agent runs as its own process (its installed command), as on an instrument computer; the
server is ``dataflow-lite serve`` on a free port with its local endpoint, so "verified" means
the transfer worker checked the bytes at the destination.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .conftest import LiveServer, start_server, stop_server

AGENT = [sys.executable, "-m", "dataflow_lite_agent"]


def agent(state: Path, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*AGENT, "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def receipts(state: Path, folder: Path) -> list[dict]:
    out = agent(state, "receipts", str(folder), "--json").stdout
    return [json.loads(line) for line in out.splitlines()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_run(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def get_dataset(server: LiveServer, key: str, dataset_id: int) -> dict:
    answer = requests.get(
        f"{server.api}/datasets/{dataset_id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def dataset_files(server: LiveServer, key: str, dataset_id: int) -> dict[str, dict]:
    dataset = get_dataset(server, key, dataset_id)
    return {
        "/".join(p for p in (f["relative_path"], f["name"]) if p): f
        for f in dataset["dataset_files"]
        if not f["is_directory"]
    }


def wait_for(condition, seconds: float = 60, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.2)
    return found


# What needs no server -------------------------------------------------------------------------


def test_clean_deletes_only_verified_unchanged_files(tmp_path: Path):
    from dataflow_lite_agent.state import Receipt, State

    run = make_run(
        tmp_path / "run",
        {
            "ok.bin": b"a" * 10,
            "edited.bin": b"b" * 10,
            "waiting.bin": b"c" * 10,
            "fresh.bin": b"d" * 10,
        },
    )
    state = State(tmp_path / "state")
    for name in ("ok.bin", "edited.bin", "waiting.bin", "fresh.bin"):
        path = run / name
        found = path.stat()
        verified = None if name == "waiting.bin" else "2026-01-01T00:00:00Z"
        if name == "fresh.bin":
            verified = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        state.keep(
            Receipt(
                str(path),
                "http://s",
                1,
                name,
                found.st_size,
                found.st_mtime_ns,
                sha256(path),
                "2026-01-01T00:00:00Z",
                uploaded_at="2026-01-01T00:00:00Z",
                verified_at=verified,
            )
        )
    # Same size, same time, other bytes: only the sha256 read again tells.
    edited = run / "edited.bin"
    times = edited.stat()
    edited.write_bytes(b"B" * 10)
    os.utime(edited, ns=(times.st_atime_ns, times.st_mtime_ns))
    state.close()

    refused = agent(tmp_path / "state", "clean", str(run), check=False)
    assert refused.returncode == 2 and "--verified" in refused.stderr
    dry = agent(
        tmp_path / "state", "clean", str(run), "--verified", "--older-than", "7d", "--dry-run"
    ).stdout
    assert f"would delete {run / 'ok.bin'}" in dry
    assert all((run / name).exists() for name in ("ok.bin", "edited.bin", "waiting.bin"))
    out = agent(tmp_path / "state", "clean", str(run), "--verified", "--older-than", "7d").stdout
    assert not (run / "ok.bin").exists()
    assert (run / "edited.bin").read_bytes() == b"B" * 10 and "changed since it was sent" in out
    assert (run / "waiting.bin").exists() and "not verified yet" in out
    assert (run / "fresh.bin").exists() and "verified less than 7d ago" in out
    assert "deleted 1 file(s), kept 3" in out
    [ok] = [r for r in receipts(tmp_path / "state", run) if r["path"] == "ok.bin"]
    assert ok["deleted"] is True


def test_receipts_say_which_files_wait_which_failed_and_which_are_verified(tmp_path: Path):
    from dataflow_lite_agent.state import Receipt, State

    state = State(tmp_path / "state")
    run = tmp_path / "run"
    for name, more in [
        ("new.bin", {}),
        ("big.bin", {"error": "the server refused it (413): larger than its limit"}),
        ("kept.bin", {"uploaded_at": "2026-01-01T00:00Z", "verified_at": "2026-01-01T00:01Z"}),
    ]:  # fmt: skip
        state.keep(Receipt(str(run / name), "http://s", 1, name, 2, 0, "ab" * 32, "2026", **more))
    state.close()
    lines = agent(tmp_path / "state", "receipts", str(run)).stdout.splitlines()
    shown = {
        name: [line for line in lines if f" {name}" in line] for name in ("new", "big", "kept")
    }
    assert [line.split()[0] for line in shown["new"]] == ["waiting"]
    assert [line.split()[0] for line in shown["big"]] == ["failed"]
    assert "big.bin  (the server refused it (413): larger than its limit)" in shown["big"][0]
    assert [line.split()[0] for line in shown["kept"]] == ["verified"]


def test_push_refuses_two_sources_landing_on_one_path(tmp_path: Path):
    make_run(tmp_path / "a", {"x.bin": b"1"})
    make_run(tmp_path / "b", {"x.bin": b"2"})
    done = agent(
        tmp_path / "state",
        "push",
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        "--server",
        "http://127.0.0.1:9",
        "--key",
        "k",
        check=False,
    )
    assert done.returncode == 1
    assert "would both be x.bin" in done.stderr and "Traceback" not in done.stderr


def test_push_dry_run_says_what_it_would_send_and_sends_nothing(tmp_path: Path):
    run = make_run(tmp_path / "run", {"a.bin": b"12", "sub/b.bin": b"345"})
    out = agent(
        tmp_path / "state",
        "push",
        str(run),
        "--server",
        "http://127.0.0.1:9",
        "--key",
        "k",
        "--relative-path",
        "raw",
        "--dry-run",
    ).stdout
    assert "would send 2 file(s), 5 bytes, to a new dataset 'run'" in out
    assert f"{run / 'sub' / 'b.bin'} -> raw/sub/b.bin" in out
    assert not (tmp_path / "state" / "agent.sqlite3").exists()


def test_watch_dry_run_names_the_complete_files_of_each_run(tmp_path: Path):
    watched = tmp_path / "watched"
    make_run(watched, {"run1/a.raw": b"1", "run1/~$a.raw": b"lock", "run1/dataflow.json": b"{}",
                       "run2/b.raw": b"2", "alone.raw": b"3", ".hidden/c.raw": b"4"})  # fmt: skip
    old = time.time() - 3600
    for path in watched.rglob("*"):
        os.utime(path, (old, old))
    (watched / "run2" / "new.raw").write_bytes(b"still being written")
    out = agent(tmp_path / "state", "watch", str(watched), "--server", "http://127.0.0.1:9",
                "--key", "k", "--quiet-seconds", "60", "--dry-run").stdout  # fmt: skip
    assert out.splitlines() == [
        "would send to dataset 'alone.raw':",
        f"  {watched / 'alone.raw'} -> alone.raw",
        "would send to dataset 'run1':",
        f"  {watched / 'run1' / 'a.raw'} -> a.raw",
        "would send to dataset 'run2':",
        f"  {watched / 'run2' / 'b.raw'} -> b.raw",
    ]


def test_an_unreachable_server_is_one_line(tmp_path: Path):
    run = make_run(tmp_path / "run", {"a.bin": b"12"})
    done = agent(
        tmp_path / "state",
        "push",
        str(run),
        "--server",
        "http://127.0.0.1:9",
        "--key",
        "k",
        check=False,
    )
    assert done.returncode == 1 and "did not answer" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--server", "127.0.0.1:9"], "'127.0.0.1:9' is no server address"),
        # The API's address, as ordflow takes it, names the same server: asked, not refused.
        (["--server", "http://127.0.0.1:9/api/v1/"], "http://127.0.0.1:9 did not answer"),
        (["--relative-path", "raw/../../up"], "a folder named '.' or '..' is not allowed"),
        (["--relative-path", "./raw", "--dry-run"], "a folder named '.' or '..' is not allowed"),
    ],
)
def test_push_refuses_a_bad_address_or_folder_in_one_line_before_anything(tmp_path, args, says):
    run = make_run(tmp_path / "run", {"a.bin": b"12"})
    command = ["push", str(run), "--server", "http://127.0.0.1:9", "--key", "k", *args]
    done = agent(tmp_path / "state", *command, check=False)
    assert done.returncode == 1 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "/api/v1/api/v1" not in done.stderr


def test_receipts_of_a_folder_that_does_not_exist_is_one_line(tmp_path: Path):
    done = agent(tmp_path / "state", "receipts", str(tmp_path / "absent"), check=False)
    assert done.returncode == 1 and "no such folder" in done.stderr and done.stdout == ""
    make_run(tmp_path / "present", {"a.bin": b"1"})
    assert agent(tmp_path / "state", "receipts", str(tmp_path / "present"), "--json").stdout == ""


# Against a real server ------------------------------------------------------------------------


@pytest.mark.server
def test_push_sends_a_tree_and_a_file_and_every_receipt_is_verified(live_server, cli, tmp_path):
    key = cli.user_key("suhas")
    run = make_run(
        tmp_path / "run42",
        {
            "a.tif": os.urandom(3 << 20),
            "sub/b.txt": b"spectrum",
            "sub/deeper/c.csv": b"1,2\n",
            "empty.dat": b"",
        },
    )
    single = make_run(tmp_path, {"notes.md": b"# notes"}) / "notes.md"
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"sample": "Si", "stage": {"temperature": 4.2}}))
    state = tmp_path / "state"
    command = ("push", str(run), str(single), "--server", live_server.url, "--key", key,
               "--metadata", str(meta), "--quiet")  # fmt: skip
    pushed = agent(state, *command)
    out = pushed.stdout
    # The receipts (what each file's check found) say why, should one file stay unverified.
    told = agent(state, "receipts", "--json", check=False).stdout
    assert "5 file(s) sent, 0 already there, 5 of 5 verified at the destination" in out, (
        out + pushed.stderr + told
    )
    dataset_id = int(out.split()[1].rstrip(":"))
    on_server = dataset_files(live_server, key, dataset_id)
    assert sorted(on_server) == ["a.tif", "empty.dat", "notes.md", "sub/b.txt", "sub/deeper/c.csv"]
    dataset = get_dataset(live_server, key, dataset_id)
    assert dataset["name"] == "run42"
    values = {v["field_name"]: v["field_value"] for v in dataset["metadata_field_values"]}
    assert values == {"sample": "Si", "stage-temperature": "4.2"}  # as DataFlow shows values
    for receipt in receipts(state, tmp_path):
        source = tmp_path / receipt["path"]
        assert receipt["verified"] is True and receipt["sha256"] == sha256(source)
        assert receipt["dataset_id"] == dataset_id
        assert Path(receipt["destination"]).read_bytes() == source.read_bytes()

    # The same command again sends nothing and makes no second dataset.
    again = agent(state, *command).stdout
    assert f"dataset {dataset_id}: 0 file(s) sent, 5 already there, 5 of 5 verified" in again
    # Under another name every file would be refused: no dataset is made for none of them.
    other = agent(state, *command, "--name", "run42 again", check=False)
    assert other.returncode == 1 and "every file was sent already" in other.stderr
    assert f"--dataset {dataset_id}" in other.stderr
    mine = requests.get(f"{live_server.api}/datasets/search", params={"q": "again"},
                        headers={"Authorization": f"Bearer {key}"}, timeout=30).json()  # fmt: skip
    assert mine["total"] == 0


@pytest.mark.server
def test_push_killed_mid_run_then_run_again_sends_every_file_exactly_once(
    live_server, cli, tmp_path
):
    key = cli.user_key("suhas")
    files = {f"frames/{n:03}.raw": os.urandom(64 << 10) for n in range(40)}
    files["big.bin"] = os.urandom(48 << 20)
    run = make_run(tmp_path / "run", files)
    state = tmp_path / "state"
    command = [
        *AGENT,
        "--state",
        str(state),
        "push",
        str(run),
        "--server",
        live_server.url,
        "--key",
        key,
        "--jobs",
        "2",
        "--quiet",
    ]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def some_sent() -> bool:
        try:
            with sqlite3.connect(state / "agent.sqlite3") as db:
                sent = db.execute("SELECT count(*) FROM receipts WHERE uploaded_at IS NOT NULL")
                started = db.execute(
                    "SELECT count(*) FROM receipts WHERE upload_url IS NOT NULL "
                    "AND source LIKE '%big.bin'"
                )
                return sent.fetchone()[0] >= 5 and started.fetchone()[0] == 1
        except sqlite3.Error:
            return False

    wait_for(some_sent, what="some files sent and the big one begun")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = agent(state, "push", str(run), "--server", live_server.url, "--key", key, "--quiet")
    assert "of 41 verified at the destination" in second.stdout, second.stdout
    assert "41 of 41 verified" in second.stdout
    dataset_id = int(second.stdout.split()[1].rstrip(":"))
    on_server = dataset_files(live_server, key, dataset_id)
    assert sorted(on_server) == sorted(files)  # each once: no duplicate, none missing
    for target, content in files.items():
        assert on_server[target]["sha256"] == hashlib.sha256(content).hexdigest()
        assert on_server[target]["file_length"] == len(content)
    for receipt in receipts(state, run):
        assert Path(receipt["destination"]).read_bytes() == files[receipt["path"]]


@pytest.mark.server
def test_push_resumes_the_upload_a_killed_run_made_but_never_noted(live_server, cli, tmp_path):
    key = cli.user_key("suhas")
    run = make_run(tmp_path / "run", {"frame.raw": os.urandom(100_000)})
    auth = {"Authorization": f"Bearer {key}"}
    dataset = requests.post(
        f"{live_server.api}/datasets", json={"name": "run"}, headers=auth, timeout=30
    ).json()
    # What a run killed right after the server's 201 leaves: an upload the agent never noted.
    lost = requests.post(f"{live_server.api}/uploads/", headers={
        **auth, "Tus-Resumable": "1.0.0", "Upload-Length": "100000",
        "Upload-Metadata": "dataset_id " + base64.b64encode(str(dataset["id"]).encode()).decode()
        + ",filename " + base64.b64encode(b"frame.raw").decode(),
    }, timeout=30)  # fmt: skip
    assert lost.status_code == 201
    out = agent(tmp_path / "state", "push", str(run), "--dataset", str(dataset["id"]),
                "--server", live_server.url, "--key", key, "--quiet").stdout  # fmt: skip
    assert "1 file(s) sent, 0 already there, 1 of 1 verified" in out, out
    [only] = dataset_files(live_server, key, dataset["id"]).values()
    assert only["sha256"] == sha256(run / "frame.raw")


def watch(state: Path, folder: Path, server: str, key: str, *options: str) -> subprocess.Popen:
    command = [*AGENT, "--state", str(state), "watch", str(folder), "--server", server,
               "--key", key, "--interval", "0.2", *options]  # fmt: skip
    with open(state.parent / "watch.log", "ab") as log:  # the agent keeps its own copy open
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def sent_paths(state: Path, folder: Path) -> dict[str, dict]:
    if not (state / "agent.sqlite3").exists():
        return {}
    return {r["path"]: r for r in receipts(state, folder) if r["uploaded"]}


@pytest.mark.server
def test_watch_never_sends_a_growing_file_before_it_is_quiet(live_server, cli, tmp_path):
    key = cli.user_key("suhas")
    watched = tmp_path / "watched"
    (watched / "run1").mkdir(parents=True)
    (watched / "run1" / "dataflow.json").write_text(json.dumps({"operator": "ada"}))
    (watched / "run1" / "~$lock.tmp").write_text("office's lock file")
    growing = watched / "run1" / "growing.dat"
    state = tmp_path / "state"
    # A quiet period well above the 0.9 s between writes: on a busy machine a write may come
    # late, and the look below (a process of its own) may take seconds to start.
    watcher = watch(state, watched, live_server.url, key, "--quiet-seconds", "5")
    try:
        with growing.open("wb") as out:
            for _ in range(8):  # 8 x 0.9 s: longer than the quiet period
                out.write(os.urandom(4096))
                out.flush()
                time.sleep(0.9)
        assert sent_paths(state, watched) == {}
        receipt = wait_for(
            lambda: sent_paths(state, watched).get("run1/growing.dat"), what="the grown file sent"
        )
        assert receipt["size"] == 8 * 4096 and receipt["sha256"] == sha256(growing)
        wait_for(
            lambda: sent_paths(state, watched)["run1/growing.dat"]["verified"],
            90,
            "the file verified",
        )
    finally:
        watcher.terminate()
        watcher.wait()
    [dataset_id] = {r["dataset_id"] for r in receipts(state, watched)}
    on_server = dataset_files(live_server, key, dataset_id)
    assert sorted(on_server) == ["growing.dat"]  # neither the lock file nor dataflow.json
    dataset = get_dataset(live_server, key, dataset_id)
    assert dataset["name"] == "run1"
    assert {v["field_name"]: v["field_value"] for v in dataset["metadata_field_values"]} == {
        "operator": "ada"
    }


@pytest.mark.server
def test_watch_waits_for_the_marker_and_for_a_server_that_was_down(instance, cli, tmp_path):
    key = cli.user_key("suhas")
    watched = tmp_path / "watched"
    make_run(watched / "run7", {"a.raw": b"a" * 1000, "b/c.raw": b"c" * 2000})
    state = tmp_path / "state"
    server = start_server(instance, tmp_path / "server.log")
    url = server.url
    stop_server(server)  # the server is away when the run is finished
    port = url.rsplit(":", 1)[1]
    watcher = watch(state, watched, url, key, "--quiet-seconds", "0", "--marker", "DONE")
    try:
        time.sleep(2)
        (watched / "run7" / "DONE").write_text("")
        # Marker there, server away: the agent tries (however long it took to start) and goes on.
        tried = tmp_path / "watch.log"
        wait_for(lambda: "did not answer" in tried.read_text(), 120, "a try at the server away")
        assert sent_paths(state, watched) == {}
        server = start_server(instance, tmp_path / "server2.log", port=int(port))
        try:
            # The agent waits longer after each failed try (up to 300 s): the server's start,
            # slow on a busy machine, may have doubled its wait more than once.
            sent = wait_for(
                lambda: len(sent_paths(state, watched)) == 2 and sent_paths(state, watched),
                240,
                "the run sent",
            )
            assert set(sent) == {"run7/a.raw", "run7/b/c.raw"}
        finally:
            stop_server(server)
    finally:
        watcher.terminate()
        watcher.wait()
    log = (tmp_path / "watch.log").read_text()
    assert "did not answer" in log and "Traceback" not in log


@pytest.mark.server
def test_push_finds_the_bundle_a_killed_run_sent_but_never_noted(live_server, cli, tmp_path):
    """The server took a bundle and the run was killed before it noted so: the rerun's bundle is
    refused (409) early, and the agent finds those files there and sends only the others."""
    key = cli.user_key("suhas")
    files = {f"frames/{n:03}.raw": os.urandom(64 << 10) for n in range(200)}
    run = make_run(tmp_path / "run", files)
    auth = {"Authorization": f"Bearer {key}"}
    dataset = requests.post(
        f"{live_server.api}/datasets", json={"name": "run"}, headers=auth, timeout=30
    ).json()
    taken = dict(list(files.items())[:120])
    manifest = [
        {"path": path, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        for path, content in taken.items()
    ]
    sent = requests.post(
        f"{live_server.api}/dataset-file-bundle",
        data={"dataset_id": str(dataset["id"]), "manifest": json.dumps(manifest)},
        files=[("files", ("bundle", b"".join(taken.values())))],
        headers=auth,
        timeout=60,
    )
    assert sent.status_code == 201, sent.text
    out = agent(tmp_path / "state", "push", str(run), "--dataset", str(dataset["id"]),
                "--server", live_server.url, "--key", key, "--quiet").stdout  # fmt: skip
    assert "80 file(s) sent, 120 already there, 200 of 200 verified" in out, out
    on_server = dataset_files(live_server, key, dataset["id"])
    assert sorted(on_server) == sorted(files)
    for receipt in receipts(tmp_path / "state", run):
        assert Path(receipt["destination"]).read_bytes() == files[receipt["path"]]


@pytest.mark.server
def test_push_sends_small_files_one_by_one_when_told(live_server, cli, tmp_path):
    key = cli.user_key("suhas")
    files = {f"{n}.raw": os.urandom(1000) for n in range(5)}
    run = make_run(tmp_path / "run", files)
    out = agent(tmp_path / "state", "push", str(run), "--server", live_server.url, "--key", key,
                "--bundle-max-kib", "-1", "--quiet").stdout  # fmt: skip
    assert "5 file(s) sent, 0 already there, 5 of 5 verified" in out, out
    # Every file came over tus: each has its resumable upload on the server.
    state = sqlite3.connect(tmp_path / "state" / "agent.sqlite3")
    urls = [row[0] for row in state.execute("SELECT upload_url FROM receipts")]
    assert len(urls) == 5 and all("/api/v1/uploads/" in url for url in urls)


def test_a_file_sent_over_tus_is_hashed_by_the_reads_that_send_it(tmp_path: Path):
    from dataflow_lite_agent.hashing import HashingReader

    source = tmp_path / "volume.raw"
    source.write_bytes(os.urandom(3 << 20))
    expected = hashlib.sha256(source.read_bytes()).hexdigest()

    in_order = HashingReader(str(source))
    for offset in (0, 1 << 20, 1 << 20, 2 << 20):  # the second chunk sent twice (a retry)
        in_order.seek(offset)
        in_order.read(1 << 20)
    assert in_order.sha256(3 << 20) == expected
    in_order.close()

    resumed = HashingReader(str(source))
    resumed.seek(2 << 20)  # a run that resumes an upload begins past the start
    resumed.read(1 << 20)
    assert resumed.sha256(3 << 20) is None, "the file is then hashed once more, whole"
    resumed.close()


@pytest.mark.server
def test_a_file_left_to_a_tus_send_that_never_ran_goes_in_a_bundle_hashed(instance, cli, tmp_path):
    """A run that would send a file over tus (hashed as it is sent) stops before sending; the
    next run, with a higher bundle limit, sends it in a bundle, whose manifest needs its hash."""
    key = cli.user_key("suhas")
    run = make_run(tmp_path / "run", {"frame.raw": os.urandom(600 << 10)})
    server = start_server(instance, tmp_path / "server.log")
    url, port = server.url, int(server.url.rsplit(":", 1)[1])
    auth = {"Authorization": f"Bearer {key}"}
    dataset = requests.post(
        f"{server.api}/datasets", json={"name": "run"}, headers=auth, timeout=30
    ).json()
    stop_server(server)
    command = ["push", str(run), "--dataset", str(dataset["id"]), "--server", url, "--key", key,
               "--quiet"]  # fmt: skip
    away = agent(tmp_path / "state", *command, "--bundle-max-kib", "512", check=False)
    assert away.returncode == 1 and "did not answer" in away.stderr
    server = start_server(instance, tmp_path / "server2.log", port=port)
    try:
        out = agent(tmp_path / "state", *command).stdout  # the default limit: a bundle
        assert "1 file(s) sent, 0 already there, 1 of 1 verified" in out, out
        [receipt] = receipts(tmp_path / "state", run)
        assert receipt["sha256"] == sha256(run / "frame.raw") and receipt["verified"] is True
    finally:
        stop_server(server)
