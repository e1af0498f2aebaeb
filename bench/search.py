"""Finding datasets at a million: generate a catalog, load it with `dataflow-lite import` beside a
raw sqlite3 load of the same rows, then time every query class through gunicorn.

The catalog: N datasets (half of them one user's, ``alice``), 5 typed metadata values and 3
files each, as JSONL. The import is timed beside a raw sqlite3 load of the same rows (datasets,
values, files, one full-text row each: parsed from the same file, no checks) into a second,
empty instance, in the same run. Each query class is then asked >= 20 times as alice through the
HTTP API beside a trivial authenticated GET and a raw FTS5 lookup, and each answer's ``total``
is compared with a count made while generating. A query this server cannot answer yet (400) or
answers with the wrong count is reported as such; the bench goes on.

    .venv/bin/python bench/search.py --datasets 20000
    .venv/bin/python bench/search.py                     # 1,000,000
    .venv/bin/python bench/search.py --load-only         # the import figures only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from serving import cli, serving

USERS = ["alice"] + [f"user{n}" for n in range(9)]
BASE = datetime(2016, 1, 1, tzinfo=UTC)
DAYS = 714  # ~1,400 datasets a day at a million


def generate(path: Path, count: int) -> dict[str, int]:
    """Write ``count`` datasets to ``path``; return alice's expected count per query name."""
    expected: Counter[str] = Counter()
    step = DAYS * 86400 / count
    day = (BASE + timedelta(days=DAYS // 2)).strftime("%Y-%m-%d")
    with path.open("w") as out:
        for i in range(count):
            creator = "alice" if i % 2 == 0 else USERS[1 + i % 9]
            created = BASE + timedelta(seconds=int(i * step))
            temperature = round(250 + (i % 200) * 0.5, 1)
            item = {
                "name": f"scan {i} of sample {i % 1000}",
                "creator": creator,
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "metadata": {
                    "Sample": {"Id": f"S-{i % 1000}", "Temperature": temperature},
                    "Count": i % 100,
                    "Operator": f"op{i % 5}",
                    "Measured": created.strftime("%Y-%m-%d"),
                },
                "files": [
                    {"relative_path": "", "name": f"frame_{i:07d}_{k}.tif", "size": 1000 + k,
                     "sha256": hashlib.sha256(f"{i}/{k}".encode()).hexdigest()}
                    for k in range(3)
                ],
            }  # fmt: skip
            out.write(json.dumps(item) + "\n")
            if creator != "alice":
                continue
            expected["all"] += 1
            expected["word ~1/5"] += i % 5 == 3
            expected["date"] += item["created_at"].startswith(day)
            expected["Sample-Temperature>300"] += temperature > 300
            expected["Count:10..19"] += 10 <= i % 100 <= 19
            expected["Sample-Id:S-16"] += i % 1000 == 16
            expected["file substring"] += 3 * ("00012" in f"{i:07d}")
            expected["combined"] += i % 5 == 3 and temperature > 300
    expected["day"] = 0
    return {**expected, "_day": day}  # type: ignore[dict-item]


def raw_load(database: Path, source: Path) -> float:
    """Seconds a plain sqlite3 load of the same rows takes (parsed from the same file)."""

    def flat(node: dict, prefix: str = ""):
        for key, value in node.items():
            name = f"{prefix}-{key}" if prefix else key
            if isinstance(value, dict):
                yield from flat(value, name)
            else:
                yield name, value

    db = sqlite3.connect(database, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    began = time.perf_counter()
    users = dict(db.execute("SELECT username, id FROM user"))
    endpoint = db.execute("SELECT id FROM endpoint").fetchone()[0]
    datasets, values, files, texts = [], [], [], []
    for ident, line in enumerate(source.open("rb"), start=1):
        item = json.loads(line)
        created = item["created_at"].replace("T", " ").rstrip("Z") + ".000000"
        datasets.append((ident, item["name"], users[item["creator"]], None, endpoint,
                         f"folder/{ident}", created))  # fmt: skip
        pairs = list(flat(item["metadata"]))
        values += [(ident, name, json.dumps(value), None) for name, value in pairs]
        files += [(ident, f["name"], f["relative_path"], 0, f["size"], None, f["sha256"], created)
                  for f in item["files"]]  # fmt: skip
        words = [item["name"]]
        for name, value in pairs:
            words += (name, str(value))
        words += [f["name"] for f in item["files"]]
        texts.append((ident, "\n".join(words)))
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO dataset (id, name, creator_id, instrument_id, endpoint_id, folder, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", datasets)  # fmt: skip
    db.executemany(
        "INSERT INTO metadatavalue (dataset_id, field_name, value, metadata_field_id) "
        "VALUES (?, ?, ?, ?)", values)  # fmt: skip
    db.executemany(
        "INSERT INTO datasetfile (dataset_id, name, relative_path, is_directory, file_length, "
        "file_type, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", files)  # fmt: skip
    db.executemany("INSERT INTO dataset_text (rowid, body) VALUES (?, ?)", texts)
    db.execute("COMMIT")
    seconds = time.perf_counter() - began
    db.close()
    return seconds


def new_instance(path: Path) -> Path:
    cli(path, "init")
    for user in USERS:
        cli(path, "user", "add", user)
    return path


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def timed_get(session: requests.Session, url: str, runs: int) -> tuple[list[float], dict]:
    samples, answer = [], {}
    for _ in range(runs):
        began = time.perf_counter()
        response = session.get(url, timeout=120)
        samples.append((time.perf_counter() - began) * 1000)
        answer = {"status": response.status_code, **(response.json() if response.content else {})}
    return samples, answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--load-only", action="store_true", help="stop after the import")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-search-", dir=args.dir))
    try:
        source = work / "catalog.jsonl"
        began = time.perf_counter()
        expected = generate(source, args.datasets)
        print(f"generated {args.datasets:,} datasets in {time.perf_counter() - began:.1f} s")
        instance, peer = new_instance(work / "instance"), new_instance(work / "raw")
        began = time.perf_counter()
        command = [sys.executable, "-m", "dataflow_lite", "--instance", str(instance), "import",
                   str(source)]  # fmt: skip
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        imported = time.perf_counter() - began
        # The command's own figure leaves out Python's start (imports, no cached bytecode).
        own = float(re.search(r" in ([\d.]+) s \(", done.stderr).group(1))  # type: ignore[union-attr]
        # The largest child so far is the import (the other children are short CLI commands).
        import_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        raw = raw_load(peer / "dataflow.sqlite3", source)
        rate, raw_rate = args.datasets / own, args.datasets / raw
        verdict = "PASS" if rate >= 10_000 and rate >= raw_rate / 2 else "FAIL"
        print("| load | seconds | datasets/s | vs raw |\n| --- | --- | --- | --- |")
        print(f"| dataflow-lite import (its own timing) | {own:.1f} | {rate:,.0f} | "
              f"{rate / raw_rate:.2f} {verdict} |")  # fmt: skip
        print(
            f"| the same, whole command with Python's start | {imported:.1f} | "
            f"{args.datasets / imported:,.0f} | {args.datasets / imported / raw_rate:.2f} |"
        )
        print(f"| raw sqlite3, same rows | {raw:.1f} | {raw_rate:,.0f} | 1 |")
        print(f"peak RSS: the import {import_rss:,.0f} MB, the bench with the raw load "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")  # fmt: skip
        if args.load_only:
            return 0 if verdict == "PASS" else 1
        return queries(instance, expected, args.runs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def queries(instance: Path, expected: dict, runs: int) -> int:
    key = cli(instance, "key", "create", "alice").strip()
    day = expected["_day"]
    start = (datetime.strptime(day, "%Y-%m-%d") - timedelta(days=3)).strftime("%Y-%m-%d")
    classes = [
        ("word ~1/5", "datasets/search?q=op3", "word ~1/5"),
        ("a word in every dataset", "datasets/search?q=scan", "all"),
        ("a date (YYYY-MM-DD)", f"datasets/search?q={day}", "date"),
        ("empty q (list all)", "datasets/search?q=", "all"),
        ("file name substring", "dataset-files/search?q=00012", "file substring"),
        ("Sample-Temperature>300", "datasets/search?q=Sample-Temperature%3E300",
         "Sample-Temperature>300"),
        ("Count:10..19", "datasets/search?q=Count:10..19", "Count:10..19"),
        ("Sample-Id:S-16", "datasets/search?q=Sample-Id:S-16", "Sample-Id:S-16"),
        ("created:range", f"datasets/search?q=created:{start}..{day}", None),
        ("op3 Sample-Temperature>300", "datasets/search?q=op3+Sample-Temperature%3E300",
         "combined"),
        ("file:00012", "datasets/search?q=file:00012", None),
        ("facets", "datasets/facets?q=op3&fields=Sample-Id,created", None),
    ]  # fmt: skip
    failed = 0
    with serving(instance) as url:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        trivial, _ = timed_get(session, f"{url}/api/v1/user-settings", runs)
        _, trivial_p95 = percentiles(trivial)
        print("\n| query | p50 ms | p95 ms | p95 / trivial | count | \n|---|---|---|---|---|")
        print(f"| trivial authenticated GET | {percentiles(trivial)[0]:.1f} | {trivial_p95:.1f} |"
              " 1 | |")  # fmt: skip
        for title, path, counted in classes:
            samples, answer = timed_get(session, f"{url}/api/v1/{path}", runs)
            p50, p95 = percentiles(samples)
            limit = 10 if title == "facets" else 3
            if answer["status"] != 200:
                count = f"answered {answer['status']}: {answer.get('message', '')[:60]}"
                failed += 1
            elif counted is None:
                count = "(not checked)"
            elif answer.get("total") == expected[counted]:
                count = f"{answer['total']} right"
            else:
                count = f"WRONG: {answer.get('total')} (expected {expected[counted]})"
                failed += 1
            ratio = p95 / trivial_p95
            failed += ratio > limit
            print(f"| {title} | {p50:.1f} | {p95:.1f} | {ratio:.1f} "
                  f"{'PASS' if ratio <= limit else 'FAIL'} | {count} |")  # fmt: skip
    db = sqlite3.connect(instance / "dataflow.sqlite3")
    raw = []
    for _ in range(runs):
        began = time.perf_counter()
        db.execute(
            "SELECT rowid FROM dataset_text WHERE dataset_text MATCH 'op3' LIMIT 20"
        ).fetchall()
        raw.append((time.perf_counter() - began) * 1000)
    p50, p95 = percentiles(raw)
    print(f"| raw FTS5 MATCH ... LIMIT 20 | {p50:.2f} | {p95:.2f} | | |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
