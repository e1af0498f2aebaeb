"""Upload benchmark for dataflow-lite: what one large upload costs the server.

It makes a temporary directory (under /tmp, or --dir) holding a fresh instance and a file of
random bytes (1 GiB by default), starts ``dataflow_lite serve --workers 1`` on a free local port,
and uploads the file once to ``POST /api/v1/dataset-file-upload`` with a streaming client
(curl -F, or requests-toolbelt's MultipartEncoder with --client toolbelt), or as a resumable
upload to ``/api/v1/uploads/`` with the real tuspy client (--client tus: one tus upload sent in
--tus-chunk-mib PATCHes), then waits until the transfer queue has put the file in place and
verified it. The server's processes are the
gunicorn worker that receives the body (the child of the gunicorn master) and, when ``serve``
runs one, the transfer worker that links the staged file into place; their /proc entries are
read before the upload and after the transfer is done, and summed. It prints, with PASS/FAIL
for each target:

1. upload MB/s (from sending the request to the answer, the staged file then synced), beside
   ``cp --reflink=never FILE COPY && sync`` of the same file (the ratio is upload/cp); how
   long the transfer queue then took to put the file in place is printed below the table;
2. the server's CPU seconds for the upload (utime+stime from /proc/PID/stat), beside one bare
   hashlib.sha256 pass over the file in 1 MiB chunks in this process (target: at most 3x for
   multipart, 1.5x for tus),
   and, for information, beside one pass that hashes and also writes a synced copy;
3. bytes the server wrote to storage (write_bytes from /proc/PID/io) beside the file size
   (target: at most 1.2x for multipart, 1.01x for tus: each byte once, plus the catalog's
   few KiB of progress records);
4. the server's peak RSS growth: VmHWM after the upload minus VmRSS before it, the processes
   having been warmed by a small upload first and their VmHWM reset to VmRSS just before
   (writing 5 to /proc/PID/clear_refs), so that an earlier peak cannot hide the upload's
   (target: under 64 MiB whatever the file size);

and checks that the landed file's sha256 equals the source's. The server is stopped (its
process group killed) and the temporary directory removed at the end.

Before each timed step (upload, sha256+write, cp) it syncs and waits --settle seconds (10 by
default), so that each step starts from the same state. On the VM this was written on
(presumably through virtio-balloon free page reporting, which hands freed memory back to the
host), a 1 GiB buffered write cost about 0.2 s of kernel CPU into memory freed a moment
before and 1.7-1.9 s into memory freed 10 s earlier or never touched: without the pause,
whichever step runs first pays for the others and the numbers swing by 2x from run to run.
Use --settle 0 on bare metal.

Run it from the repository root:

    .venv/bin/python bench/upload.py [--size-mib 1024] [--dir /tmp] [--client curl|toolbelt|tus]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from requests_toolbelt import MultipartEncoder

CHUNK = 1 << 20
MIB = 1 << 20
CPU_TARGET = {"multipart": 3.0, "tus": 1.5}  # worker CPU / bare sha256 CPU, at most
WRITE_TARGET = {"multipart": 1.2, "tus": 1.01}  # worker write_bytes / file size, at most
RSS_TARGET_MIB = 64  # peak RSS growth, under


def cli(*args: str, instance: Path) -> str:
    """Run ``python -m dataflow_lite --instance INSTANCE ARGS``; return its stdout."""
    command = [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settle(seconds: float) -> None:
    """Flush dirty pages, then let the machine go quiet before a timed step."""
    subprocess.run(["sync"], check=True)
    time.sleep(seconds)


def make_file(path: Path, size: int) -> None:
    """Write ``size`` random bytes to ``path``, synced (so its writeback pollutes nothing)."""
    with open(path, "wb") as out:
        for start in range(0, size, CHUNK):
            out.write(os.urandom(min(CHUNK, size - start)))
    subprocess.run(["sync"], check=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_and_write(path: Path, copy: Path) -> None:
    """What a streaming server must at least do: hash the file and write it out, synced."""
    digest = hashlib.sha256()
    with open(path, "rb") as source, open(copy, "wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


def proc_cpu_seconds(pid: int) -> tuple[float, float]:
    """utime and stime of ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd (state) on
    utime, stime = int(fields[11]), int(fields[12])  # the 14th and 15th fields
    tick = os.sysconf("SC_CLK_TCK")
    return utime / tick, stime / tick


def proc_keyed(path: str) -> dict[str, int]:
    """``key: number [kB]`` lines of a /proc file, as bytes for kB values."""
    values = {}
    for line in Path(path).read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def sample(pid: int) -> dict[str, int | float]:
    """CPU seconds, bytes written to storage, VmRSS and VmHWM of ``pid``, all threads."""
    status = proc_keyed(f"/proc/{pid}/status")
    user, system = proc_cpu_seconds(pid)
    return {
        "user": user,
        "system": system,
        "write_bytes": proc_keyed(f"/proc/{pid}/io")["write_bytes"],
        "VmRSS": status["VmRSS"],
        "VmHWM": status["VmHWM"],
    }


def reset_peak_rss(pid: int) -> bool:
    """Set VmHWM of ``pid`` back to its VmRSS (Linux 4.0+); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def server_processes(serve_pid: int) -> dict[str, int]:
    """The pids of the web worker and, if there is one, the transfer worker.

    ``serve`` either execs gunicorn (its pid is then the master's) or runs gunicorn and
    ``dataflow_lite worker`` as its children. The web worker is the gunicorn master's child.
    """
    if "gunicorn" in cmdline(serve_pid):
        master, others = serve_pid, []
    else:
        kids = children(serve_pid)
        masters = [pid for pid in kids if "gunicorn" in cmdline(pid)]
        if len(masters) != 1:
            return {}
        master, others = masters[0], [pid for pid in kids if pid != masters[0]]
    web = children(master)
    if len(web) != 1:
        return {}
    processes = {"web worker": web[0]}
    for pid in others:
        processes["transfer worker" if len(others) == 1 else f"serve's child {pid}"] = pid
    return processes


def start_server(instance: Path, port: int, log: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    """Start ``serve`` in its own process group; return it and its processes' pids."""
    command = [sys.executable, "-m", "dataflow_lite", "--instance", str(instance)]
    command += ["serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}):\n{log.read_text()}")
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            processes = server_processes(server.pid)
        except (requests.ConnectionError, OSError):
            processes = {}
        if processes:
            return server, processes
        time.sleep(0.2)
    stop_server(server)
    raise SystemExit(f"the server did not come up in 30 s:\n{log.read_text()}")


def stop_server(server: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


def tus_upload(base: str, key: str, dataset_id: int, path: Path, chunk: int) -> dict:
    """Send ``path`` as one tus upload with tuspy; return its file as the multipart route would."""
    from tusclient.client import TusClient

    auth = {"Authorization": f"Bearer {key}"}
    with open(path, "rb") as stream:
        uploader = TusClient(f"{base}/uploads/", headers=auth).uploader(
            file_stream=stream,
            chunk_size=chunk,
            metadata={"dataset_id": str(dataset_id), "filename": path.name},
        )
        uploader.upload()
    dataset = requests.get(f"{base}/datasets/{dataset_id}", headers=auth, timeout=30).json()
    (entry,) = [f for f in dataset["dataset_files"] if f["name"] == path.name]
    transfers = requests.get(
        f"{base}/transfers", params={"dataset_id": dataset_id}, headers=auth, timeout=30
    ).json()
    (transfer,) = [t for t in transfers if t["file_id"] == entry["id"]]
    return {
        "transfer_id": transfer["id"],
        "sha256": entry["sha256"],
        "destination": str(Path(dataset["destination"]) / path.name),
    }


def upload(client: str, url: str, key: str, dataset_id: int, path: Path, chunk: int) -> dict:
    """Upload ``path`` with ``client``: a streamed multipart body, or tus; return the file."""
    if client == "tus":
        return tus_upload(url.rsplit("/", 1)[0], key, dataset_id, path, chunk)
    if client == "curl":
        command = [
            "curl",
            "-sS",
            "--fail-with-body",
            "-H",
            f"Authorization: Bearer {key}",
            "-H",
            "Expect:",
            "-F",
            f"dataset_id={dataset_id}",
            "-F",
            f"file=@{path};type=application/octet-stream",
            url,
        ]
        answer = subprocess.run(command, capture_output=True, text=True)
        if answer.returncode != 0:
            raise SystemExit(
                f"upload failed (curl {answer.returncode}): {answer.stdout}{answer.stderr}"
            )
        return json.loads(answer.stdout)
    with open(path, "rb") as source:
        encoder = MultipartEncoder(
            fields={
                "dataset_id": str(dataset_id),
                "file": (path.name, source, "application/octet-stream"),
            }
        )
        headers = {"Authorization": f"Bearer {key}", "Content-Type": encoder.content_type}
        response = requests.post(url, data=encoder, headers=headers, timeout=3600)
    if response.status_code != 201:
        raise SystemExit(f"upload failed ({response.status_code}): {response.text}")
    return response.json()


def wait_landed(base: str, key: str, answer: dict) -> None:
    """Wait until the transfer queue has put the uploaded file in place and verified it."""
    if "transfer_id" not in answer:
        return  # a server that moves the file inside the request
    url = f"{base}/transfers/{answer['transfer_id']}"
    while True:
        transfer = requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        transfer.raise_for_status()
        state = transfer.json()["state"]
        if state == "done":
            return
        if state == "failed":
            raise SystemExit(f"the transfer failed: {transfer.json()['last_error']}")
        time.sleep(0.05)


def machine() -> str:
    model = platform.processor() or "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    python = platform.python_version()
    return f"nproc {nproc}, CPU {model}, Python {python}, Linux {platform.release()}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-mib", type=int, default=1024, help="file size in MiB (default 1024)"
    )
    parser.add_argument(
        "--dir", default=None, help="where to make the temporary directory (default /tmp)"
    )
    parser.add_argument(
        "--client",
        choices=["curl", "toolbelt", "tus"],
        default="curl" if shutil.which("curl") else "toolbelt",
        help="curl -F (default if installed), requests-toolbelt MultipartEncoder, or tuspy (tus)",
    )
    parser.add_argument(
        "--tus-chunk-mib", type=int, default=64, help="bytes of each tus PATCH, MiB (default 64)"
    )
    parser.add_argument(
        "--settle", type=float, default=10, help="seconds of quiet before each timed step"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.client == "curl" and shutil.which("curl") is None:
        parser.error("curl is not installed: use --client toolbelt")

    size = args.size_mib * MIB
    chunk = args.tus_chunk_mib * MIB
    route = "tus" if args.client == "tus" else "multipart"
    cpu_target, write_target = CPU_TARGET[route], WRITE_TARGET[route]
    work = Path(tempfile.mkdtemp(prefix="dataflow-bench-", dir=args.dir))
    server = None
    try:
        fs = subprocess.run(
            ["stat", "-f", "-c", "%T", str(work)], capture_output=True, text=True
        ).stdout.strip()
        print(f"machine: {machine()}")
        print(
            f"temp dir: {work} ({fs}); file {args.size_mib} MiB; client {args.client}"
            + (f" ({args.tus_chunk_mib} MiB PATCHes)" if route == "tus" else "")
            + "; "
            f"settle {args.settle:g} s"
        )

        source = work / "upload.bin"
        make_file(source, size)

        # One bare sha256 pass, the floor for what the server must do with each byte.
        cpu = time.process_time()
        source_sha256 = sha256_file(source)
        sha_cpu = time.process_time() - cpu

        instance = work / "instance"
        cli("init", instance=instance)
        cli("user", "add", "bench", instance=instance)
        key = cli("key", "create", "bench", instance=instance)
        port = free_port()
        server, processes = start_server(instance, port, work / "server.log")
        base = f"http://127.0.0.1:{port}/api/v1"
        auth = {"Authorization": f"Bearer {key}"}
        answer = requests.post(
            f"{base}/datasets", json={"name": "bench", "instrument_id": 0}, headers=auth, timeout=30
        )
        answer.raise_for_status()
        dataset_id = answer.json()["id"]
        url = f"{base}/dataset-file-upload"

        # Warm the server (imports, caches, first SQLite writes) with a small upload.
        warmup = work / "warmup.bin"
        warmup.write_bytes(os.urandom(256 * 1024))
        wait_landed(base, key, upload(args.client, url, key, dataset_id, warmup, chunk))

        settle(args.settle)
        # VmHWM is a peak since the process started: bring it down to VmRSS, so that what the
        # upload adds is not hidden under an earlier peak (start-up, the warm-up request).
        reset = all([reset_peak_rss(pid) for pid in processes.values()])
        before = {name: sample(pid) for name, pid in processes.items()}
        start = time.perf_counter()
        landed = upload(args.client, url, key, dataset_id, source, chunk)
        upload_seconds = time.perf_counter() - start
        wait_landed(base, key, landed)
        landed_seconds = time.perf_counter() - start - upload_seconds
        after = {name: sample(pid) for name, pid in processes.items()}
        landed_sha256 = sha256_file(Path(landed["destination"]))

        # The same hashing plus writing, in this process: the floor for any streaming server.
        copy = work / "copy.bin"
        settle(args.settle)
        cpu = time.process_time()
        hash_and_write(source, copy)
        floor_cpu = time.process_time() - cpu
        copy.unlink()

        settle(args.settle)
        start = time.perf_counter()
        subprocess.run(["cp", "--reflink=never", str(source), str(copy)], check=True)
        subprocess.run(["sync"], check=True)
        cp_seconds = time.perf_counter() - start
        copy.unlink()
    finally:
        if server is not None:
            stop_server(server)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    # Per process: CPU, bytes written and peak RSS growth over the upload.
    used = {
        name: {
            "user": after[name]["user"] - before[name]["user"],
            "system": after[name]["system"] - before[name]["system"],
            "written": after[name]["write_bytes"] - before[name]["write_bytes"],
            "rss": after[name]["VmHWM"] - before[name]["VmRSS"],
        }
        for name in processes
    }
    server_cpu = sum(u["user"] + u["system"] for u in used.values())
    written = sum(u["written"] for u in used.values())
    rss_growth = sum(u["rss"] for u in used.values())
    upload_mbs = size / 1e6 / upload_seconds
    cp_mbs = size / 1e6 / cp_seconds
    sha_ok = landed_sha256 == source_sha256 == landed.get("sha256", source_sha256)

    rows = [
        (
            "throughput",
            f"{upload_mbs:.0f} MB/s upload",
            f"{cp_mbs:.0f} MB/s cp+sync",
            f"{upload_mbs / cp_mbs:.2f}x",
            "(none)",
            "",
        ),
        (
            "server CPU",
            f"{server_cpu:.2f} s",
            f"{sha_cpu:.2f} s sha256",
            f"{server_cpu / sha_cpu:.2f}x",
            f"<= {cpu_target}x",
            verdict(server_cpu <= cpu_target * sha_cpu),
        ),
        ("", "", f"{floor_cpu:.2f} s sha256+write", f"{server_cpu / floor_cpu:.2f}x", "(info)", ""),
        (
            "server write_bytes",
            f"{written / MIB:.1f} MiB",
            f"{size / MIB:.1f} MiB file",
            f"{written / size:.3f}x",
            f"<= {write_target}x",
            verdict(written <= write_target * size),
        ),
        (
            "peak RSS growth",
            f"{rss_growth / MIB:.1f} MiB",
            "",
            "",
            f"< {RSS_TARGET_MIB} MiB",
            verdict(rss_growth < RSS_TARGET_MIB * MIB),
        ),
        (
            "landed sha256",
            landed_sha256[:16] + "…",
            source_sha256[:16] + "… source",
            "",
            "equal",
            verdict(sha_ok),
        ),
    ]
    header = ("measure", "server", "baseline", "ratio", "target", "result")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * width for width in widths)
    print(line)
    for row in [header, *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )
    print(line)
    print(
        f"upload answered after {upload_seconds:.2f} s, the file verified in place "
        f"{landed_seconds:.2f} s later; cp+sync {cp_seconds:.2f} s"
    )
    print("sha256+write = one pass in this process hashing and writing a copy, fsynced")
    how = "VmHWM reset to VmRSS before the upload" if reset else "VmHWM could not be reset"
    print("server figures are summed over these processes (peak RSS growth = VmHWM after")
    print(f"the upload - VmRSS before it; {how}):")
    for name, u in used.items():
        print(
            f"  {name} (pid {processes[name]}): CPU user {u['user']:.2f} s + system "
            f"{u['system']:.2f} s; wrote {u['written'] / MIB:.1f} MiB"
        )
        print(
            f"    VmRSS before {before[name]['VmRSS'] / MIB:.1f} MiB, VmHWM before "
            f"{before[name]['VmHWM'] / MIB:.1f} MiB, VmHWM after {after[name]['VmHWM'] / MIB:.1f} "
            f"MiB: growth {u['rss'] / MIB:.1f} MiB"
        )
    sys.exit(0 if all(row[5] != "FAIL" for row in rows) else 1)


if __name__ == "__main__":
    main()
