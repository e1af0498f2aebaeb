"""Upload benchmark for dataflow-lite: what one large upload costs the server.

It makes a temporary directory (under /tmp, or --dir) holding a fresh instance and a file of
random bytes (1 GiB by default), starts ``dataflow_lite serve`` with one gthread worker on a
free local port, and uploads the file once to ``POST /api/v1/dataset-file-upload`` with a
streaming client (curl -F, or requests-toolbelt's MultipartEncoder with --client toolbelt).
Around the upload it reads the worker's /proc entries and prints, with PASS/FAIL for each
target:

1. upload MB/s through the server, beside ``cp --reflink=never FILE COPY && sync`` of the
   same file (the ratio is upload/cp);
2. the worker's CPU seconds for the upload (utime+stime from /proc/PID/stat), beside one bare
   hashlib.sha256 pass over the file in 1 MiB chunks in this process (target: at most 3x);
3. bytes the worker wrote to storage (write_bytes from /proc/PID/io) beside the file size
   (target: at most 1.2x);
4. the worker's peak RSS growth: VmHWM after the upload minus VmRSS before it, the worker
   having been warmed by a small upload first (target: under 64 MiB whatever the file size);

and checks that the landed file's sha256 equals the source's. The server is stopped (its
process group killed) and the temporary directory removed at the end.

Run it from the repository root:

    .venv/bin/python bench/upload.py [--size-mib 1024] [--dir /tmp] [--client curl|toolbelt]
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
CPU_TARGET = 3.0  # worker CPU / bare sha256 CPU, at most
WRITE_TARGET = 1.2  # worker write_bytes / file size, at most
RSS_TARGET_MIB = 64  # peak RSS growth, under


def cli(*args: str, instance: Path) -> str:
    """Run ``python -m dataflow_lite --instance INSTANCE ARGS``; return its stdout."""
    command = [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd (state) on
    utime, stime = int(fields[11]), int(fields[12])  # the 14th and 15th fields
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def proc_keyed(path: str) -> dict[str, int]:
    """``key: number [kB]`` lines of a /proc file, as bytes for kB values."""
    values = {}
    for line in Path(path).read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def worker_sample(pid: int) -> dict[str, float]:
    status = proc_keyed(f"/proc/{pid}/status")
    return {
        "cpu": proc_cpu_seconds(pid),
        "write_bytes": proc_keyed(f"/proc/{pid}/io")["write_bytes"],
        "VmRSS": status["VmRSS"],
        "VmHWM": status["VmHWM"],
    }


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


def start_server(instance: Path, port: int, log: Path) -> tuple[subprocess.Popen, int]:
    """Start ``serve`` in its own process group; return it and its one worker's pid."""
    command = [sys.executable, "-m", "dataflow_lite", "--instance", str(instance),
               "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}); see {log}:\n{log.read_text()}")
        workers = children(server.pid)  # serve execs gunicorn: its pid is the master's
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
        except requests.ConnectionError:
            workers = []
        if len(workers) == 1:
            return server, workers[0]
        time.sleep(0.2)
    stop_server(server)
    raise SystemExit(f"the server did not come up in 30 s; see {log}")


def stop_server(server: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def upload(client: str, url: str, key: str, dataset_id: int, path: Path) -> dict:
    """POST ``path`` as a streamed multipart body; return the JSON answer."""
    if client == "curl":
        command = ["curl", "-sS", "--fail-with-body", "-H", f"Authorization: Bearer {key}",
                   "-H", "Expect:", "-F", f"dataset_id={dataset_id}",
                   "-F", f"file=@{path};type=application/octet-stream", url]
        answer = subprocess.run(command, capture_output=True, text=True)
        if answer.returncode != 0:
            raise SystemExit(f"upload failed (curl {answer.returncode}): {answer.stdout}{answer.stderr}")
        return json.loads(answer.stdout)
    with open(path, "rb") as source:
        encoder = MultipartEncoder(fields={
            "dataset_id": str(dataset_id),
            "file": (path.name, source, "application/octet-stream"),
        })
        headers = {"Authorization": f"Bearer {key}", "Content-Type": encoder.content_type}
        response = requests.post(url, data=encoder, headers=headers, timeout=3600)
    if response.status_code != 201:
        raise SystemExit(f"upload failed ({response.status_code}): {response.text}")
    return response.json()


def machine() -> str:
    model = platform.processor() or "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"nproc {nproc}, CPU {model}, Python {platform.python_version()}, Linux {platform.release()}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--dir", default=None, help="where to make the temporary directory (default /tmp)")
    parser.add_argument("--client", choices=["curl", "toolbelt"], default="curl",
                        help="streaming client: curl -F, or requests-toolbelt MultipartEncoder (default curl)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.client == "curl" and shutil.which("curl") is None:
        parser.error("curl is not installed: use --client toolbelt")

    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="dataflow-bench-", dir=args.dir))
    server = None
    try:
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(work)], capture_output=True, text=True).stdout.strip()
        print(f"machine: {machine()}")
        print(f"temp dir: {work} ({fs}); file {args.size_mib} MiB; client {args.client}")

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
        server, worker = start_server(instance, port, work / "server.log")
        base = f"http://127.0.0.1:{port}/api/v1"
        auth = {"Authorization": f"Bearer {key}"}
        answer = requests.post(f"{base}/datasets", json={"name": "bench", "instrument_id": 0}, headers=auth, timeout=30)
        answer.raise_for_status()
        dataset_id = answer.json()["id"]

        # Warm the worker (imports, caches, first SQLite writes) with a small upload.
        warmup = work / "warmup.bin"
        warmup.write_bytes(os.urandom(256 * 1024))
        upload(args.client, f"{base}/dataset-file-upload", key, dataset_id, warmup)
        subprocess.run(["sync"], check=True)

        before = worker_sample(worker)
        start = time.perf_counter()
        landed = upload(args.client, f"{base}/dataset-file-upload", key, dataset_id, source)
        upload_seconds = time.perf_counter() - start
        after = worker_sample(worker)

        subprocess.run(["sync"], check=True)
        copy = work / "copy.bin"
        start = time.perf_counter()
        subprocess.run(["cp", "--reflink=never", str(source), str(copy)], check=True)
        subprocess.run(["sync"], check=True)
        cp_seconds = time.perf_counter() - start
        copy.unlink()

        landed_path = Path(landed["destination"])
        landed_sha256 = sha256_file(landed_path)
    finally:
        if server is not None:
            stop_server(server)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    upload_mbs = size / 1e6 / upload_seconds
    cp_mbs = size / 1e6 / cp_seconds
    worker_cpu = after["cpu"] - before["cpu"]
    written = after["write_bytes"] - before["write_bytes"]
    rss_growth = after["VmHWM"] - before["VmRSS"]
    hwm_growth = after["VmHWM"] - before["VmHWM"]
    sha_ok = landed_sha256 == source_sha256 and landed.get("sha256", source_sha256) == source_sha256

    rows = [
        ("throughput", f"{upload_mbs:.0f} MB/s upload", f"{cp_mbs:.0f} MB/s cp+sync",
         f"{upload_mbs / cp_mbs:.2f}x", "(none)", ""),
        ("worker CPU", f"{worker_cpu:.2f} s", f"{sha_cpu:.2f} s sha256",
         f"{worker_cpu / sha_cpu:.2f}x", f"<= {CPU_TARGET}x", verdict(worker_cpu <= CPU_TARGET * sha_cpu)),
        ("worker write_bytes", f"{written / MIB:.1f} MiB", f"{size / MIB:.1f} MiB file",
         f"{written / size:.3f}x", f"<= {WRITE_TARGET}x", verdict(written <= WRITE_TARGET * size)),
        ("peak RSS growth", f"{rss_growth / MIB:.1f} MiB", "", "", f"< {RSS_TARGET_MIB} MiB",
         verdict(rss_growth < RSS_TARGET_MIB * MIB)),
        ("landed sha256", landed_sha256[:16] + "…", source_sha256[:16] + "… source",
         "", "equal", verdict(sha_ok)),
    ]
    header = ("measure", "server", "baseline", "ratio", "target", "result")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * width for width in widths)
    print(line)
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(line)
    print(f"upload {upload_seconds:.2f} s, cp+sync {cp_seconds:.2f} s")
    print(f"peak RSS growth = VmHWM after ({after['VmHWM'] / MIB:.1f} MiB) - VmRSS before "
          f"({before['VmRSS'] / MIB:.1f} MiB); VmHWM after - VmHWM before = {hwm_growth / MIB:.1f} MiB")
    sys.exit(0 if all(row[5] != "FAIL" for row in rows) else 1)


if __name__ == "__main__":
    main()
