"""The hosts that serve one catalog, as their transfer workers check in (each sweep: at start and
every minute).

A check-in records the host's name (``host_name``) with the machine and instance folder that
used it, so a second instance folder cannot take the name of a live host: two hosts of one name
would each claim the other's staged files and fail on them. A host that has not checked in for
``host_lost_seconds`` is lost: each check-in of another host writes on the transfers waiting for
it what happened and what an admin can do, and the lost host's own next check-in takes those
words back.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, update
from sqlmodel import col, select

from dataflow_lite.adapter import QUEUED, RUNNING, VERIFYING
from dataflow_lite.settings import ConfigError
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.models import Host, Transfer, utcnow

#: How the words on a lost host's transfers begin.
WAITING_FOR = "waiting for host "


class HostNameTaken(ConfigError):
    """Another instance folder, still checking in, serves the catalog under this host name."""


def place(instance: Path) -> str:
    """Where a host runs: the machine and its instance folder."""
    return f"{socket.gethostname()}:{instance.resolve()}"


def check_in(engine: Engine, name: str, where: str, lost_after: timedelta) -> None:
    """Record that host ``name`` (at ``where``) is alive; mark the transfers of lost hosts.
    Raise HostNameTaken if another place checked in under the name within ``lost_after``."""
    now = utcnow()
    with session_scope(engine) as session:
        host = session.get(Host, name)
        if host is not None and host.place != where and host.seen_at > now - lost_after:
            raise HostNameTaken(
                f"host_name {name!r} is taken: {host.place} checked in under it at "
                f"{host.seen_at:%Y-%m-%d %H:%M:%S} UTC; give each host its own host_name in "
                "its config.toml"
            )
        if host is None:
            session.add(Host(name=name, place=where, seen_at=now))
        else:
            host.place, host.seen_at = where, now
        session.execute(
            update(Transfer)
            .where(
                col(Transfer.staged_on) == name, col(Transfer.last_error).startswith(WAITING_FOR)
            )
            .values(last_error=None)
        )
        for lost in session.exec(select(Host).where(col(Host.seen_at) <= now - lost_after)):
            if lost.name == name:
                continue
            session.execute(
                update(Transfer)
                .where(
                    col(Transfer.staged_on) == lost.name,
                    col(Transfer.state).in_((QUEUED, RUNNING, VERIFYING)),
                    col(Transfer.last_error).is_(None)
                    | ~col(Transfer.last_error).startswith(WAITING_FOR),
                )
                .values(last_error=_lost(lost))
            )


def _lost(host: Host) -> str:
    return (
        f"{WAITING_FOR}{host.name}, not seen since {host.seen_at:%Y-%m-%d %H:%M} UTC: if it will "
        "not come back, copy its staging folder's files to another host and run "
        f"'dataflow-lite transfers adopt {host.name}' there"
    )
