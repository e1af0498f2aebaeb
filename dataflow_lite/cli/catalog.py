"""``dataflow-lite import``, ``reindex`` and ``db rebuild-search``: filling the catalog, and
what search reads of it.

``import`` records the datasets of a JSONL file (an existing catalog's export); ``reindex``
restores a local endpoint's datasets from their ``metadata.json`` files after a lost database;
``db rebuild-search`` writes every dataset's full-text row again from the catalog. They say what
they did on stderr, ``import`` and ``db rebuild-search`` with a progress bar on a terminal.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from dataflow_lite.cli.base import CLI, echo_done, main, runtime
from dataflow_lite.cli.db import db_group
from dataflow_lite.services.imports import import_datasets
from dataflow_lite.services.reindex import reindex_endpoint
from dataflow_lite.services.searches import rebuild_search


class Bar:
    """A long command's progress as a tqdm bar on stderr, one per phase (hidden off a terminal)."""

    def __init__(self) -> None:
        self.bar: tqdm[Any] | None = None

    def phase(self, name: str, total: int | None) -> None:
        """End the previous phase's bar and start one for ``name``."""
        self.close()
        self.bar = tqdm(total=total, desc=name, unit=" datasets", disable=None, leave=False)

    def advance(self, steps: int) -> None:
        """Move the bar on by ``steps``."""
        if self.bar is not None:
            self.bar.update(steps)

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--endpoint", default=None, help="The endpoint's name or id (default: the default).")
@click.option("--skip-bad", is_flag=True, help="Import the good lines, naming the bad ones.")
@click.option(
    "--chunked",
    is_flag=True,
    help="Commit every 10,000 datasets, also into an empty SQLite catalog: a running server's "
    "writes wait for one chunk, not the whole file (a million datasets load about 1.5x slower).",
)
def import_command(file: Path, endpoint: str | None, skip_bad: bool, chunked: bool) -> None:
    """Record the datasets of FILE (JSONL, one per line) at an endpoint; no file is moved.

    Each line: {"name", "creator" (username), "instrument" (name or id, optional),
    "created_at" (ISO 8601, UTC), "metadata" (nested object), "files": [{"relative_path",
    "name", "size", "sha256"}]}. Every line is checked: if any is bad, nothing is imported
    and the bad lines are named (unless --skip-bad). Into a SQLite catalog with no dataset yet,
    the whole file goes in one transaction, which the server's writes wait for (unless
    --chunked).
    """
    began = time.perf_counter()
    with Bar() as bar:
        report = import_datasets(
            runtime(),
            CLI,
            file,
            file.name,
            endpoint,
            skip_bad=skip_bad,
            chunked=chunked,
            progress=bar,
        )
    for number, message in report.bad:
        echo_done(f"skipped line {number}: {message}")
    seconds = time.perf_counter() - began
    ids = f" (ids {report.first_id}-{report.last_id})" if report.imported else ""
    echo_done(
        f"imported {report.imported} of {report.lines} dataset(s) at endpoint "
        f"{report.endpoint}{ids} in {seconds:.1f} s ({report.imported / seconds:,.0f} datasets/s)"
    )


@main.command("reindex")
@click.argument("endpoint")
@click.option("--dry-run", is_flag=True, help="Report what would be restored; change nothing.")
def reindex_command(endpoint: str, dry_run: bool) -> None:
    """Restore the datasets and files of local ENDPOINT's metadata.json files into the catalog.

    Each file that is missing, or whose bytes no longer match, is reported by name (on stdout),
    as are files that metadata.json does not list, links (never followed) and folders this
    server did not make (never read).
    """
    report = reindex_endpoint(runtime(), CLI, endpoint, dry_run=dry_run)
    for line in report.lines:
        click.echo(line)
    would = "would restore" if report.dry_run else "restored"
    echo_done(
        f"{report.folders} dataset folder(s) at endpoint {report.endpoint}: {would} "
        f"{report.restored} dataset(s) and {report.files_restored} file(s)"
    )


@db_group.command("rebuild-search")
def rebuild_search_command() -> None:
    """Make every dataset's full-text row say what the catalog says.

    Run it after the SQLite library that Python uses changes (its tokenizer decides the words
    rows hold), or if rows were written by hand. On SQLite it first has FTS5 index its tables
    again, each in one transaction that the server's writes wait for (they fail past
    busy_timeout_ms): on a large catalog, stop serve and worker first.
    """
    began = time.perf_counter()
    with Bar() as bar:
        done = rebuild_search(runtime(), CLI, progress=bar)
    indexed = f"; indexed {' and '.join(done.indexed)} again" if done.indexed else ""
    echo_done(
        f"compared the full-text rows of {done.datasets} dataset(s) with the catalog: wrote "
        f"{done.written}, dropped {done.dropped}{indexed} ({time.perf_counter() - began:.1f} s)"
    )
