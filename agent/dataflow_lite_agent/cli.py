"""``dataflow-agent``: push, watch, receipts and clean."""

from __future__ import annotations

import json
import os
import re
import select
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from .bundles import Limits
from .hashing import sha256_of
from .sending import (
    Planned,
    check_verified,
    hash_all,
    progress_bar,
    send_all,
    unchanged,
)
from .server import AgentError, Server, read_metadata
from .state import State, now
from .watch import Watcher

#: How often push asks whether its files are verified: one small GET, the last wait of a run.
POLL_SECONDS = 0.2
SERVER = click.option(
    "--server",
    required=True,
    envvar="DATAFLOW_SERVER",
    help="the server's address, e.g. http://host:8000 ($DATAFLOW_SERVER)",
)
KEY = click.option(
    "--key", required=True, envvar="DATAFLOW_KEY", help="an API key of yours ($DATAFLOW_KEY)"
)
JOBS = click.option("--jobs", type=click.IntRange(1, 32), default=4, show_default=True,
                    help="files sent at once")  # fmt: skip
BUNDLE = click.option(
    "--bundle-max-kib", "bundle_max_kib", type=click.IntRange(min=-1), default=1024,
    show_default=True,
    help="files up to this size go up to 100 to a request (-1: every file alone, over tus)",
)  # fmt: skip
DRY_RUN = click.option("--dry-run", is_flag=True, help="say what would be done, do nothing")


class AgentGroup(click.Group):
    """Every AgentError (and every OSError) is one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as error:
            if not _stdout_gone():
                raise click.ClickException(str(error)) from None
            # The reader went away (`| head`): stop without a word.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except (AgentError, OSError) as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=AgentGroup)
@click.option(
    "--state",
    "state_folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: click.get_app_dir("dataflow-agent"),
    show_default="a per-user folder",
    help="where the agent keeps its queue and receipts",
)
@click.pass_context
def main(ctx: click.Context, state_folder: Path) -> None:
    """Send an instrument's runs to a dataflow-lite server and tell when they may be deleted."""
    ctx.obj = state_folder


def open_state() -> State:
    state = State(Path(click.get_current_context().find_root().obj))
    click.get_current_context().call_on_close(state.close)
    return state


def plan(paths: tuple[Path, ...], prefix: str) -> list[Planned]:
    """Every file of ``paths``, each with its path in the dataset: a folder's files keep their
    path inside that folder, a file goes to the root; ``prefix`` goes before all of them."""
    folders = [part for part in prefix.replace("\\", "/").split("/") if part]
    if any(part in (".", "..") for part in folders):
        raise AgentError(f"--relative-path {prefix!r}: a folder named '.' or '..' is not allowed")
    planned: dict[str, Planned] = {}
    for path in paths:
        path = path.resolve()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file())
            pairs = [(p, p.relative_to(path).as_posix()) for p in found]
        elif path.is_file():
            pairs = [(path, path.name)]
        else:
            raise AgentError(f"{path} is neither a file nor a folder")
        for source, inside in pairs:
            target = f"{prefix.strip('/')}/{inside}" if prefix.strip("/") else inside
            if target in planned:
                raise AgentError(
                    f"{planned[target].source} and {source} would both be {target} in the dataset"
                )
            planned[target] = Planned(source, target)
    return list(planned.values())


def refuse_if_all_sent(state: State, planned: list[Planned]) -> None:
    """Refuse, before a new dataset is made, a push whose every file went elsewhere already:
    each would be refused, and the dataset left empty."""
    sent = [state.receipt(str(item.source)) for item in planned]
    first = sent[0] if sent else None
    if first and all(receipt and receipt.uploaded_at for receipt in sent):
        raise AgentError(
            f"every file was sent already ({first.source} as {first.target} to dataset "
            f"{first.dataset_id}): no dataset made; --dataset {first.dataset_id} sends there"
        )


def small_files(bundle_max_kib: int) -> Limits:
    """What goes several to a request: files up to ``bundle_max_kib`` KiB (-1: none)."""
    return Limits(file_bytes=bundle_max_kib * 1024 if bundle_max_kib >= 0 else -1)


def wait_until_verified(state: State, server: Server, seconds: float, quiet: bool) -> int:
    """Ask the server until every sent file is verified or ``seconds`` pass; how many wait."""
    deadline = time.monotonic() + seconds
    waiting = check_verified(state, server)
    with progress_bar(quiet, total=len(waiting), desc="verified", unit="file") as bar:
        while waiting and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            still = check_verified(state, server)
            bar.update(len(waiting) - len(still))
            waiting = still
    return len(waiting)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@SERVER
@KEY
@click.option("--dataset", "dataset_id", type=int, help="an existing dataset to send into")
@click.option("--name", help="the new dataset's name (default: the first PATH's name)")
@click.option("--instrument", "instrument_id", type=int, help="the new dataset's instrument id")
@click.option("--metadata", "metadata_file", type=click.Path(dir_okay=False, path_type=Path),
              help="a JSON object of the new dataset's metadata")  # fmt: skip
@click.option("--relative-path", default="", help="a folder inside the dataset to send into")
@click.option("--wait", "wait_seconds", type=float, default=3600, show_default=True,
              help="seconds to wait until every file is verified (0: no wait)")  # fmt: skip
@JOBS
@BUNDLE
@DRY_RUN
@click.option("--quiet", is_flag=True, help="no progress bars")
def push(
    paths: tuple[Path, ...],
    server: str,
    key: str,
    dataset_id: int | None,
    name: str | None,
    instrument_id: int | None,
    metadata_file: Path | None,
    relative_path: str,
    wait_seconds: float,
    jobs: int,
    bundle_max_kib: int,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Send files and folder trees into one dataset; a second run sends only what is missing."""
    if dataset_id is not None and (name or instrument_id or metadata_file):
        raise click.UsageError("--dataset sends into an existing dataset: no --name, "
                               "--instrument or --metadata with it")  # fmt: skip
    planned = plan(paths, relative_path)
    name = name or paths[0].resolve().name
    metadata = read_metadata(metadata_file)
    if dry_run:
        where = f"dataset {dataset_id}" if dataset_id else f"a new dataset {name!r}"
        size = sum(item.source.stat().st_size for item in planned)
        click.echo(f"would send {len(planned)} file(s), {size:,} bytes, to {where}:")
        for item in planned:
            click.echo(f"  {item.source} -> {item.target}")
        return
    state = open_state()
    remote = Server(server, key)
    if dataset_id is None:
        # The same sources and name are the same push: its dataset is made once.
        place = "push\0" + name + "\0" + "\0".join(sorted(str(p.resolve()) for p in paths))
        dataset_id = state.dataset(place, remote.url)
        if dataset_id is None:
            refuse_if_all_sent(state, planned)
            dataset_id = remote.create_dataset(name, instrument_id, metadata)
            state.remember_dataset(place, remote.url, dataset_id)
    limits = small_files(bundle_max_kib)
    # Files that go over tus one by one are hashed as they are sent, not in a pass before.
    receipts, failed = hash_all(state, remote, dataset_id, planned, jobs, quiet, limits.file_bytes)
    outcome = send_all(state, remote, receipts, jobs, quiet, limits)
    failed.update(outcome.failed)
    waiting = 0
    if wait_seconds > 0 and outcome.sent + outcome.already:
        waiting = wait_until_verified(state, remote, wait_seconds, quiet)
    verified = sum(1 for r in receipts if (state.receipt(r.source) or r).verified)
    click.echo(
        f"dataset {dataset_id}: {outcome.sent} file(s) sent, {outcome.already} already there, "
        f"{verified} of {len(planned)} verified at the destination"
        + (f", {waiting} still being verified" if waiting else "")
    )
    for source, error in sorted(failed.items()):
        click.echo(f"failed: {source}: {error}", err=True)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--server", envvar="DATAFLOW_SERVER", help="ask this server first ($DATAFLOW_SERVER)")
@click.option("--key", envvar="DATAFLOW_KEY", help="with this API key ($DATAFLOW_KEY)")
def receipts(folder: Path | None, as_json: bool, server: str | None, key: str | None) -> None:
    """The receipt of every file sent (below FOLDER): its sha256 here, where it landed, and
    whether the server verified the same bytes there. With --server and --key, the server is
    asked about the unverified ones first."""
    state = open_state()
    if server and key:
        check_verified(state, Server(server, key))
    under = folder.resolve() if folder else None
    kept = list(state.receipts(under))
    if not kept and under is not None and not under.is_dir():
        raise AgentError(f"no receipts below {under}, and no such folder")
    for receipt in kept:
        path = Path(receipt.source)
        shown = path.relative_to(under).as_posix() if under else receipt.source
        if as_json:
            click.echo(json.dumps({
                "path": shown,
                "sha256": receipt.sha256,
                "size": receipt.size,
                "dataset_id": receipt.dataset_id,
                "destination": receipt.destination,
                "verified": receipt.verified,
                "uploaded": receipt.uploaded_at is not None,
                "deleted": receipt.deleted_at is not None,
                "error": receipt.error,
            }))  # fmt: skip
            continue
        status = (
            "deleted" if receipt.deleted_at else
            "verified" if receipt.verified else
            "sent" if receipt.uploaded_at else
            "failed" if receipt.error else  # its last sending failed: the next push tries again
            "waiting"
        )  # fmt: skip
        line = f"{status:9} {receipt.sha256[:12]}  dataset {receipt.dataset_id}  {shown}"
        if receipt.error and not receipt.verified:
            line += f"  ({receipt.error})"
        click.echo(line)


AGE = re.compile(r"(\d+)([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_age(text: str) -> timedelta:
    found = AGE.fullmatch(text.strip())
    if not found:
        raise click.BadParameter("a number and s, m, h or d, e.g. 7d")
    return timedelta(**{UNITS[found[2]]: int(found[1])})


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--verified", is_flag=True, help="delete the files whose receipt is verified")
@click.option("--older-than", "older_than", default="0s",
              help="only those verified at least this long ago (e.g. 7d, 12h)")  # fmt: skip
@DRY_RUN
def clean(folder: Path, verified: bool, older_than: str, dry_run: bool) -> None:
    """Delete source files below FOLDER that the server verified at their destination.

    A file is deleted only if its receipt is verified, it was verified long enough ago, and it
    is still the very file that was hashed (same size and time, and the same sha256 read again
    now). Nothing else is ever deleted; folders are left in place.
    """
    if not verified:
        raise click.UsageError("clean deletes only verified files: say --verified")
    cutoff = datetime.now(UTC) - parse_age(older_than)
    state = open_state()
    deleted = kept = 0
    for receipt in state.receipts(folder.resolve()):
        if receipt.deleted_at or not os.path.exists(receipt.source):
            continue
        why = None
        if not receipt.verified_at:
            why = "not verified yet"
        elif (
            datetime.strptime(receipt.verified_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            > cutoff
        ):
            why = f"verified less than {older_than} ago"
        elif not unchanged(receipt) or sha256_of(Path(receipt.source)) != receipt.sha256:
            why = "changed since it was sent"
        if why:
            kept += 1
            click.echo(f"kept {receipt.source}: {why}")
            continue
        if dry_run:
            click.echo(f"would delete {receipt.source}")
        else:
            os.unlink(receipt.source)
            state.update(receipt.source, deleted_at=now())
            click.echo(f"deleted {receipt.source}")
        deleted += 1
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {deleted} file(s), kept {kept}")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@SERVER
@KEY
@click.option("--quiet-seconds", type=click.FloatRange(min=0), default=30, show_default=True,
              help="a file is complete once unchanged this long")  # fmt: skip
@click.option("--marker", help="a file is complete once a file of this name is in its run folder")
@click.option("--per-folder", is_flag=True,
              help="send a run folder only once every file in it is complete")  # fmt: skip
@click.option("--instrument", "instrument_id", type=int, help="the new datasets' instrument id")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2, show_default=True,
              help="seconds between looks at FOLDER")  # fmt: skip
@JOBS
@BUNDLE
@DRY_RUN
def watch(
    folder: Path,
    server: str,
    key: str,
    quiet_seconds: float,
    marker: str | None,
    per_folder: bool,
    instrument_id: int | None,
    interval: float,
    jobs: int,
    bundle_max_kib: int,
    dry_run: bool,
) -> None:
    """Send every run as it is completed: each folder in FOLDER is one dataset (named after it,
    with the metadata of its dataflow.json), each file alone in FOLDER one too. Runs until
    stopped; survives reboots and a server away for days (the queue is in the state folder)."""
    watcher = Watcher(
        open_state(), Server(server, key), folder.resolve(), quiet_seconds, marker, per_folder,
        instrument_id, jobs, small_files(bundle_max_kib),
    )  # fmt: skip
    if dry_run:
        watcher.dry_run()
        return
    watcher.run(interval)


def _stdout_gone() -> bool:
    """Whether standard output's reader went away (its pipe broken), not some other pipe's."""
    if not hasattr(select, "poll"):  # Windows: no way to ask; a broken pipe is most likely it
        return True
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))
