"""Moving a batch with rsync for the sftp adapter: one run (one login) for many files, each
file's fate decided by what rsync surely did or, where it is unsure, by looking on the host.

A batch's guard on the host names each target and folder; a batch whose guard would not fit
one command line goes in several runs (:func:`groups`).
"""

from __future__ import annotations

import logging
import posixpath
import re
import time
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from dataflow_lite.adapter import AdapterError, Cancelled, DestinationExists, TransferJob

from .errors import Where, rsync_error
from .host import HostSession, Login, as_opened, preflight
from .rsync import (
    BASE_MISSING,
    NO_REMOTE_RSYNC,
    PARTIAL_DIR,
    Pushed,
    RsyncUnavailable,
    push,
)

if TYPE_CHECKING:
    from . import SftpAdapter

log = logging.getLogger(__name__)

# How long a failed or cancelled rsync's host side may take to put its partial data away.
PARTIAL_WAIT_SECONDS = 30
# rsync's exit codes for a run that sent some files and not others (23: some failed, 24: some
# vanished): each file's fate is looked at on the host.
PER_FILE_CODES = (23, 24)
# The most bytes of paths one rsync's host-side guard may name (a command line on the host is
# at most 128 KiB): a larger batch goes in several runs.
GUARD_BYTES = 96 << 10


def groups(numbers: list[int], paths: list[str]) -> list[list[int]]:
    """``numbers`` (of the jobs whose remote targets are ``paths``) in runs whose guards fit in
    GUARD_BYTES: each target, and once each of its folders and their partial folders."""
    groups: list[list[int]] = [[]]
    size = 0
    folders: set[str] = set()
    for number in numbers:
        path = paths[number]
        new = [f for f in _folders(path) if f not in folders]
        cost = len(path) + 8 + sum(2 * len(folder) + 32 for folder in new)
        if groups[-1] and size + cost > GUARD_BYTES:
            groups.append([])
            size, folders = 0, set()
            new = _folders(path)
            cost = len(path) + 8 + sum(2 * len(folder) + 32 for folder in new)
        groups[-1].append(number)
        folders.update(new)
        size += cost
    return groups


def _folders(path: str) -> list[str]:
    parents = []
    while (path := posixpath.dirname(path)) not in ("", "/", "."):
        parents.append(path)
    return parents


def _names(target: PurePosixPath, quoted: str) -> bool:
    """Whether a path in rsync's words (relative to the base or not) is ``target``, one of its
    folders, or its hidden temporary."""
    path = PurePosixPath(quoted)
    for named in (target, *target.parents[:-1]):
        if path == named or str(path).endswith(f"/{named}"):
            return True
    beside = target.parent == PurePosixPath(".") or str(path.parent).endswith(f"/{target.parent}")
    return path.name.startswith(f".{target.name}.") and (path.parent == target.parent or beside)


def _tidy(session: HostSession, path: str) -> bool:
    """Remove ``path``'s partial file and (if empty) its partial folder; whether rsync is done
    with it (no temporary of it being written beside it, no partial file)."""
    folder, name = posixpath.split(path)
    partial = posixpath.join(folder, PARTIAL_DIR)
    temporary = re.compile(rf"\.{re.escape(name)}\.[A-Za-z0-9]{{6}}")
    for remove, what in (
        (session.sftp.remove, posixpath.join(partial, name)),
        (session.sftp.rmdir, partial),
    ):
        try:
            remove(what)
        except OSError:
            pass
    try:
        writing = any(map(temporary.fullmatch, session.sftp.listdir(folder)))
    except OSError:
        writing = False  # no folder: nothing was written
    return not writing and session.exists(posixpath.join(partial, name)) is None


class RsyncBatch:
    """The rsync runs of one batch of an sftp endpoint."""

    def __init__(self, adapter: SftpAdapter) -> None:
        self.adapter = adapter

    def submit(
        self, jobs: list[TransferJob], numbers: list[int], login: Login
    ) -> dict[int, str | AdapterError]:
        """One rsync for ``jobs`` (numbered ``numbers`` in the batch); each one's outcome.

        What rsync reports decides only what it knows for sure: a run that ended well sent the
        files it itemized. Every other file is looked at on the host, all in one sha256 pass:
        there with the job's bytes (an earlier attempt's), there with others' (never replaced),
        or missing, with the words of rsync's line about it (a folder it could not make).
        """
        preflight(login, self.adapter._where)
        outcomes: dict[int, str | AdapterError] = {}
        pending = dict(zip(numbers, jobs, strict=True))
        while True:
            try:
                pushed = push(
                    list(pending.values()),
                    self.adapter.host,
                    self.adapter.port,
                    login,
                    self.adapter._where,
                    base=self.adapter.base,
                    scratch=self.adapter.context.instance_path,
                    no_links=self._no_links(list(pending.values())),
                )
            except Cancelled:
                return {**outcomes, **self._stopped(login, pending)}
            links = pushed.links()
            if not links:
                break
            before = len(outcomes)
            # Nothing ran: the files behind a link fail, the others go again. The host's shell
            # names each path as it opened it (a relative one as ./path).
            for number, job in list(pending.items()):
                found = [path for path in self._no_links([job]) if as_opened(path) in links]
                if found:
                    outcomes[number] = link_error(found[0], self.adapter._where)
                    del pending[number]
            if pending and len(outcomes) == before:
                # A link no file of the batch claims: refuse them all rather than ask again.
                refused = link_error(links[0], self.adapter._where)
                return {**outcomes, **{number: refused for number in pending}}
            if not pending:
                return outcomes
        whole: AdapterError | None = None
        if pushed.code == 0:
            sent = set(pushed.started)
            outcomes.update({n: "rsync" for n, job in pending.items() if str(job.target) in sent})
            unsure = {n: job for n, job in pending.items() if n not in outcomes}
        else:
            unsure = pending
            where = self.adapter._where
            whole = failure(pushed.code, pushed.stderr, self.adapter.base, login, where)
            if pushed.code not in PER_FILE_CODES:
                if not whole.permanent or not pushed.started:
                    # A lost connection (partial data kept for the retry to resume), a refused
                    # login: the same for every file.
                    return {**outcomes, **{n: whole for n in pending}}
                remote = [self.adapter._remote(job.target) for job in pending.values()]
                self._drop_partial(login, remote)
        outcomes.update(self._look(login, unsure, pushed, whole))
        return outcomes

    def _look(
        self,
        login: Login,
        jobs: dict[int, TransferJob],
        pushed: Pushed | None,
        whole: AdapterError | None,
    ) -> dict[int, str | AdapterError]:
        """Each job that rsync did not surely send: in place already, someone else's, or
        missing (with rsync's words about it)."""
        if not jobs:
            return {}
        with self.adapter._session(login) as session:
            hashes = self.adapter._hashes(session, session.capabilities(), list(jobs.values()))
        outcomes: dict[int, str | AdapterError] = {}
        where = self.adapter._where.host_port
        for (number, job), found in zip(jobs.items(), hashes, strict=True):
            if isinstance(found, AdapterError):
                outcomes[number] = found
            elif found == job.sha256:
                outcomes[number] = "rsync"
            elif found is not None:
                outcomes[number] = DestinationExists(job.target)
            else:
                outcomes[number] = (
                    (self._why_missing(job, pushed, login) if pushed else None)
                    or whole
                    or AdapterError(f"rsync did not send {job.target} to {where}")
                )
        return outcomes

    def _why_missing(self, job: TransferJob, pushed: Pushed, login: Login) -> AdapterError | None:
        """rsync's words about ``job``'s file or one of its folders, if it said any."""
        for line in pushed.stderr.splitlines():
            if any(_names(job.target, quoted) for quoted in re.findall(r'"([^"]*)"', line)):
                password = login.password is not None
                return rsync_error(pushed.code, line, self.adapter._where, login.username, password)
        return None

    def _stopped(self, login: Login, jobs: dict[int, TransferJob]) -> dict[int, str | AdapterError]:
        """A job of the batch was cancelled and rsync stopped: the cancelled ones leave nothing
        on the host; the others are in place already, or are retried."""
        cancelled = {n: job for n, job in jobs.items() if job.cancelled.is_set()}
        self._drop_partial(login, [self.adapter._remote(job.target) for job in cancelled.values()])
        outcomes: dict[int, str | AdapterError] = {n: Cancelled() for n in cancelled}
        others = {n: job for n, job in jobs.items() if n not in cancelled}
        if others:
            names = ", ".join(str(job.target) for job in list(cancelled.values())[:3])
            stopped = AdapterError(
                f"stopped when another file of its batch was cancelled ({names})"
            )
            outcomes.update(self._look(login, others, None, stopped))
        return outcomes

    def _no_links(self, jobs: list[TransferJob]) -> tuple[str, ...]:
        """The paths below the base that must not be symbolic links when rsync writes ``jobs``:
        their folders, the folders' partial folders, the targets."""
        folders = {
            parent for job in jobs for parent in job.target.parents if parent != PurePosixPath(".")
        }
        partials = {folder / PARTIAL_DIR for folder in {job.target.parent for job in jobs}}
        paths = [*sorted(folders), *sorted(partials), *(job.target for job in jobs)]
        return tuple(self.adapter._remote(PurePosixPath(path)) for path in paths)

    def _drop_partial(self, login: Login, paths: list[str]) -> None:
        """Remove what a failed or cancelled rsync kept of ``paths``, when no retry will resume
        it (a full disk, a cancel).

        The host's rsync, cut off, moves its hidden temporary into ``.rsync-partial/`` as it
        exits, which may be a moment after the local rsync ended: wait for the temporaries to
        go, removing the partial files each time they are there. A temporary that outlives the
        wait is left to its writer (it may be another run's).
        """
        if not paths:
            return
        deadline = time.monotonic() + PARTIAL_WAIT_SECONDS
        try:
            with self.adapter._session(login) as session:
                left = list(paths)
                while left:
                    left = [path for path in left if not _tidy(session, path)]
                    if left and time.monotonic() > deadline:
                        log.warning("rsync's temporary for %s is still being written", left[0])
                        return
                    if left:
                        time.sleep(0.2)
        except AdapterError:
            pass  # tidying only: the error being raised matters more


def failure(code: int, stderr: str, base: str, login: Login, where: Where) -> AdapterError:
    """Why an rsync run failed as a whole, in plain words; raises RsyncUnavailable when the
    host runs no rsync for the account."""
    text = stderr.lower()
    if BASE_MISSING in stderr:
        return AdapterError(
            f"the base path {base} does not exist on {where.host_port}", permanent=True
        )
    if any(words in text for words in NO_REMOTE_RSYNC):
        reason = next(line for line in stderr.splitlines() if line.strip())
        raise RsyncUnavailable(reason.strip())
    return rsync_error(code, stderr, where, login.username, login.password is not None)


def link_error(link: str, where: Where) -> AdapterError:
    """A symbolic link stands in a file's path at the destination."""
    return AdapterError(
        f"{link} on {where.host_port} is a symbolic link: links at the destination "
        "are never followed",
        permanent=True,
    )
