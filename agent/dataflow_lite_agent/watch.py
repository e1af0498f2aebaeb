"""Watching a folder: each run is sent as its files are completed.

A run is a folder directly in the watched folder (one dataset, named after it, with the metadata
of its ``dataflow.json``), or a file alone there (a dataset of its own). A file is complete
once its size and time have stayed the same for the quiet period while the agent looked, or,
with a marker name, once that file is in its run folder. The agent looks every few seconds
rather than waiting for change events: that works the same on Windows, Linux and network
shares, and a quiet period has to be timed anyway. Temporary names (``~$*``, ``*.tmp``,
``*.part``, hidden files) are never sent; neither are ``dataflow.json`` and the marker.

Nothing is kept in memory that matters: a file's receipt (its hash, its upload) is in the state
database, so after a reboot, a kill -9 or days without the server the agent takes up where it
was; only the quiet period starts again.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass
from pathlib import Path

import click

from .bundles import Limits
from .sending import Planned, check_verified, hash_all, send_all, unchanged
from .server import AgentError, Server, Unreachable, read_metadata
from .state import State, now

IGNORED = ("~$*", "*.tmp", "*.part", ".*")
METADATA = "dataflow.json"
#: Seconds between questions about verification, and the longest wait after a failed round.
VERIFY_EVERY = 10.0
LONGEST_PAUSE = 300.0


def ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


def say(message: str) -> None:
    click.echo(f"{now()} {message}", err=True)


@dataclass
class Seen:
    size: int
    mtime_ns: int
    since: float


@dataclass
class Run:
    """A run folder (or a file alone in the watched folder) and its files."""

    root: Path
    files: list[Path]

    def target(self, path: Path) -> str:
        return path.name if path == self.root else path.relative_to(self.root).as_posix()


class Watcher:
    def __init__(
        self,
        state: State,
        server: Server,
        folder: Path,
        quiet_seconds: float,
        marker: str | None,
        per_folder: bool,
        instrument_id: int | None,
        jobs: int,
        limits: Limits | None = None,
    ) -> None:
        self.state = state
        self.server = server
        self.folder = folder
        self.quiet = quiet_seconds
        self.marker = marker
        self.per_folder = per_folder
        self.instrument_id = instrument_id
        self.jobs = jobs
        self.limits = limits
        self._seen: dict[Path, Seen] = {}
        self._said: dict[str, str] = {}

    def runs(self) -> list[Run]:
        found = []
        for entry in sorted(self.folder.iterdir()):
            if ignored(entry.name):
                continue
            if entry.is_dir():
                files = [
                    path
                    for path in sorted(entry.rglob("*"))
                    if path.is_file()
                    and not any(ignored(part) for part in path.relative_to(entry).parts)
                ]
                found.append(Run(entry, files))
            elif entry.is_file():
                found.append(Run(entry, [entry]))
        return found

    def _quiet(self, path: Path, by_age: bool) -> bool:
        """Whether ``path`` has not changed for the quiet period (by its time, for a dry run)."""
        try:
            found = os.stat(path)
        except FileNotFoundError:
            return False
        if by_age:
            return time.time() - found.st_mtime >= self.quiet
        seen = self._seen.get(path)
        state = (found.st_size, found.st_mtime_ns)
        if seen is None or (seen.size, seen.mtime_ns) != state:
            self._seen[path] = Seen(*state, time.monotonic())
            return False
        return time.monotonic() - seen.since >= self.quiet

    def ready(self, run: Run, by_age: bool = False) -> tuple[list[Path], Path | None] | None:
        """The run's complete files to send, and its metadata file; None while it must wait."""
        if run.root.is_dir():
            marked = self.marker is not None and (run.root / self.marker).is_file()
            metadata = run.root / METADATA
            if metadata.is_file() and not (marked or self._quiet(metadata, by_age)):
                return None  # the dataset is made with its metadata, once that is complete
            metadata_file = metadata if metadata.is_file() else None
            inside = [
                path
                for path in run.files
                if path.parent != run.root or path.name not in (METADATA, self.marker)
            ]
        else:
            marked, metadata_file, inside = False, None, run.files
        if self.marker is not None and run.root.is_dir():
            complete = inside if marked else []
        else:
            complete = [path for path in inside if self._quiet(path, by_age)]
        if self.per_folder and len(complete) < len(inside):
            return None
        return complete, metadata_file

    def dry_run(self) -> None:
        """Say what one look would send now, judging quiet by the files' times."""
        for run in self.runs():
            ready = self.ready(run, by_age=True)
            files = [f for f in (ready[0] if ready else []) if not self._sent(f)]
            if files:
                click.echo(f"would send to dataset {run.root.name!r}:")
                for path in files:
                    click.echo(f"  {path} -> {run.target(path)}")

    def _sent(self, path: Path) -> bool:
        receipt = self.state.receipt(str(path))
        return receipt is not None and receipt.uploaded_at is not None

    def _tell(self, source: str, message: str) -> None:
        """Say ``message`` about ``source`` once, not on every look."""
        if self._said.get(source) != message:
            self._said[source] = message
            say(f"{source}: {message}")

    def look(self) -> None:
        """One look at the folder: send what is complete."""
        for run in self.runs():
            ready = self.ready(run)
            if not ready:
                continue
            files = []
            for path in ready[0]:
                receipt = self.state.receipt(str(path))
                if receipt is None or receipt.uploaded_at is None:
                    files.append(path)
                elif not unchanged(receipt):
                    self._tell(str(path), "changed after it was sent: not sent again "
                               "(rename it to send it as a new file)")  # fmt: skip
            if not files:
                continue
            place = "watch\0" + str(run.root)
            dataset_id = self.state.dataset(place, self.server.url)
            if dataset_id is None:
                metadata = read_metadata(ready[1]) if ready[1] else {}
                dataset_id = self.server.create_dataset(run.root.name, self.instrument_id, metadata)
                self.state.remember_dataset(place, self.server.url, dataset_id)
                say(f"dataset {dataset_id} for {run.root}")
            planned = [Planned(path, run.target(path)) for path in files]
            receipts, failed = hash_all(
                self.state,
                self.server,
                dataset_id,
                planned,
                self.jobs,
                True,
                self.limits.file_bytes if self.limits else -1,
            )
            outcome = send_all(self.state, self.server, receipts, self.jobs, True, self.limits)
            failed.update(outcome.failed)
            for source, error in failed.items():
                self._seen.pop(Path(source), None)  # changed or failed: judged again from now
                self._tell(source, error)
            if outcome.sent:
                say(f"sent {outcome.sent} file(s) of {run.root.name} to dataset {dataset_id}")
            if outcome.unreachable:
                raise Unreachable(f"{self.server.url} did not answer")

    def run(self, interval: float) -> None:
        """Look every ``interval`` seconds until stopped; wait longer while the server is away."""
        say(f"watching {self.folder} for {self.server.url}")
        pause, verified_at = interval, 0.0
        while True:
            try:
                self.look()
                if time.monotonic() - verified_at >= VERIFY_EVERY:
                    check_verified(self.state, self.server)
                    verified_at = time.monotonic()
                pause = interval
            except Unreachable as error:
                self._tell("server", f"{error}: trying again")
                pause = min(LONGEST_PAUSE, max(interval, pause * 2))
            except (AgentError, OSError) as error:
                self._tell("watch", str(error))
                pause = min(LONGEST_PAUSE, max(interval, pause * 2))
            time.sleep(pause)
