"""Which transfers a worker of this host may claim: due, not held by a live worker, and staged here.

Several hosts may serve one PostgreSQL catalog; each keeps its uploads in its own staging folder,
so a file's transfer runs on the host that staged it (``Transfer.staged_on``). A dataset's
``metadata.json`` is written from the catalog alone and any host may write it. Keeping staging
per host (rather than one shared mount) keeps uploads on the fast local disk the local adapter
moves them from, and a host that is gone leaves its transfers visibly waiting for it.
"""

from __future__ import annotations

import socket
from typing import Any

from sqlalchemy import Engine, and_, or_
from sqlmodel import col, select

from dataflow_lite.adapter import DONE, FAILED, QUEUED, RUNNING, VERIFYING
from dataflow_lite.store.db import session_scope
from dataflow_lite.store.models import Transfer, utcnow

ACTIVE = (RUNNING, VERIFYING)


def host_name(settings: dict[str, Any]) -> str:
    """This host's name in the catalog: the ``host_name`` setting, else the machine's name."""
    return str(settings.get("host_name") or socket.gethostname())


def claimable(now: Any, host: str) -> Any:
    """The condition a transfer meets when this host's workers may claim it ``now``."""
    # A queued transfer may still be leased: retried after a cancel whose run is stopping.
    return and_(
        col(Transfer.next_attempt_at) <= now,
        or_(col(Transfer.staged_on).is_(None), col(Transfer.staged_on) == host),
        or_(
            and_(
                col(Transfer.state) == QUEUED,
                or_(col(Transfer.lease_until).is_(None), col(Transfer.lease_until) <= now),
            ),
            and_(col(Transfer.state).in_(ACTIVE), col(Transfer.lease_until) <= now),
        ),
    )


def taken(engine: Engine, transfer_id: int) -> bool:
    """Whether the transfer has ended or a live run holds it, read without the write lock.

    A batch's files each have their message; once the batch is claimed, the others' messages
    end here, with one read each, rather than each taking the write lock (SQLite's, or the
    rows' on PostgreSQL) to find the same. What this lets through, ``claimable`` decides.
    """
    live = col(Transfer.lease_until) > utcnow()  # compared as claimable compares it
    with session_scope(engine, write=False) as session:
        found = session.exec(
            select(Transfer.state, live).where(col(Transfer.id) == transfer_id)
        ).first()
    if found is None:
        return True
    state, leased = found
    return state in (DONE, FAILED) or (state in ACTIVE and bool(leased))
