"""The audit trail: one append-only, hash-chained row per change that a service makes.

Each use case that changes something calls ``record`` inside its own write unit of work, so the
event commits (or rolls back) with the change it describes. A row's ``sha256`` covers a
canonical form of its fields and the previous row's ``sha256`` (the first row chains from
``GENESIS``); ``verify`` recomputes the chain and names the first row altered or removed.

Appending reads the newest row's hash in the caller's transaction. That is safe on SQLite
because write units of work begin with ``BEGIN IMMEDIATE``: the write lock is held from the
first statement, so no other writer can append between the read and the insert. PostgreSQL
has no such lock: there ``record`` must first take one (``pg_advisory_xact_lock``), or two
transactions will chain from the same row. Not done yet (the catalog is SQLite only).

Secrets never enter the trail: any summary key whose name has a word such as ``password``,
``secret``, ``token`` or ``key`` (``password_hash``, ``client_secret``, ``private_key``) keeps
its name but its value is replaced by ``REDACTED``, at any depth. Names ending in ``_id`` or
``_name`` (``key_id``, ``key_name``) are identifiers, not secrets, and are kept.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import func, text
from sqlmodel import SQLModel, col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services.errors import invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store.db import UnitOfWork, unit_of_work
from dataflow_lite.store.models import AuditEvent

#: What the first row's ``prev_sha256`` holds.
GENESIS = "0" * 64
#: What a secret's value is replaced with in a summary.
REDACTED = "[redacted]"
SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "secret", "token", "key", "credential", "credentials"}
)
IDENTIFIER_WORDS = frozenset({"id", "ids", "name", "names"})
MAX_PER_PAGE = 500
#: Rows read per query by ``verify``: memory stays flat however long the trail is.
VERIFY_BATCH = 1000

ALTERED = "altered"
MISSING_BEFORE = "missing before it"
MISSING_AFTER = "missing after it"

# The fields a row's hash covers, in this order (everything but ``sha256`` itself).
_HASHED = (
    "id",
    "at",
    "user_id",
    "username",
    "via",
    "address",
    "action",
    "object_type",
    "object_id",
    "summary",
    "prev_sha256",
)


def is_secret(name: str) -> bool:
    """Whether a summary key names a secret (``password_hash``, ``apiKey``; not ``key_id``)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    words = re.findall(r"[a-z0-9]+", spaced)
    if words and words[-1] in IDENTIFIER_WORDS:
        return False
    return any(word in SECRET_WORDS for word in words)


def redact(value: Any) -> Any:
    """``value`` with every secret-named key's value replaced by ``REDACTED``, at any depth."""
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if is_secret(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [redact(item) for item in items]
    return value


def _jsonable(value: Any) -> Any:
    """What a summary value that JSON cannot hold is stored as."""
    if isinstance(value, datetime):
        return _utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    # Anything else is shown as text: a change is never refused for its summary's shape.
    return str(value)


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields whose value differs: ``{"field": {"old": .., "new": ..}}`` (None if absent)."""
    names = list(after) + [name for name in before if name not in after]
    return {
        name: {"old": before.get(name), "new": after.get(name)}
        for name in names
        if before.get(name) != after.get(name)
    }


def record(
    work: UnitOfWork,
    identity: Identity,
    action: str,
    obj_type: str,
    obj_id: object,
    summary: Mapping[str, Any],
) -> AuditEvent:
    """Append an event to the trail in ``work``'s transaction, chained to the newest row.

    ``action`` is the policy action (``dataset.create``); ``summary`` says what changed, and
    its secrets are masked here (see the module's docstring).
    """
    if not work.write:
        raise AssertionError("the audit trail is appended only in a write unit of work")
    session = work.session
    # Under the catalog's write lock (store.db): no other writer can append meanwhile.
    newest = session.exec(
        select(AuditEvent.id, AuditEvent.sha256).order_by(col(AuditEvent.id).desc()).limit(1)
    ).first()
    user = identity.user
    event = AuditEvent(
        # SQLite's AUTOINCREMENT rolls back with the transaction and never reuses an id. A
        # PostgreSQL sequence does neither: a rolled-back write would leave a gap that reads as
        # removed rows, so there the next id is the newest one's plus one.
        id=None if session.get_bind().dialect.name == "sqlite" else _next_id(newest),
        at=datetime.now(UTC),
        user_id=identity.user_id,
        username=user.username if user is not None else None,
        via=identity.via,
        address=identity.address,
        action=action,
        object_type=obj_type,
        object_id=None if obj_id is None else str(obj_id),
        # Through JSON and back: the hash covers exactly what the database will give back.
        summary=json.loads(json.dumps(redact(summary), default=_jsonable)),
        prev_sha256=newest[1] if newest else GENESIS,
        sha256="",
    )
    session.add(event)
    session.flush()  # the id is part of what the hash covers
    event.sha256 = digest(_fields(event))
    session.flush()
    work.audited = True
    return event


def _fields(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _HASHED}


def digest(fields: Mapping[Any, Any]) -> str:
    """The sha256 of one row's canonical form: sorted-key JSON of its hashed fields."""
    canonical = {name: fields[name] for name in _HASHED}
    canonical["at"] = _utc_text(canonical["at"])
    body = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; one without a zone is taken to be in UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _utc_text(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def describe(event: AuditEvent) -> dict[str, Any]:
    """An event as plain values, its time in UTC."""
    return {**event.model_dump(), "at": _utc(event.at)}


@use_case("audit.read")
def list_events(
    rt: Runtime,
    identity: Identity,
    *,
    user: str | None = None,
    object_type: str | None = None,
    object_id: object = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: int = 1,
    per_page: int = 50,
) -> tuple[int, list[dict[str, Any]]]:
    """Events newest first, filtered by username, object and time (``since <= at < until``).

    Answers the number of matching events and one page of them.
    """
    authorize(identity, "audit.read")
    if page < 1:
        raise invalid("page", "must be 1 or more")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise invalid("per_page", f"must be between 1 and {MAX_PER_PAGE}")
    conditions = []
    if user is not None:
        conditions.append(col(AuditEvent.username) == user)
    if object_type is not None:
        conditions.append(col(AuditEvent.object_type) == object_type)
    if object_id is not None:
        conditions.append(col(AuditEvent.object_id) == str(object_id))
    # A time without a zone is read as UTC, as the catalog stores them.
    if since is not None:
        conditions.append(col(AuditEvent.at) >= _utc(since))
    if until is not None:
        conditions.append(col(AuditEvent.at) < _utc(until))
    with unit_of_work(rt.engine, write=False) as work:
        session = work.session
        total = session.exec(select(func.count()).select_from(AuditEvent).where(*conditions)).one()
        rows = session.exec(
            select(AuditEvent)
            .where(*conditions)
            .order_by(col(AuditEvent.id).desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        ).all()
        return total, [describe(row) for row in rows]


@dataclass(frozen=True)
class VerifyResult:
    """Whether the chain holds; if not, the first bad row's id and why."""

    ok: bool
    #: Rows whose hash was recomputed.
    checked: int
    #: The newest row's sha256: kept elsewhere, it shows later whether the newest rows went.
    head: str = GENESIS
    bad_id: int | None = None
    #: ``altered``, ``missing before it`` or ``missing after it`` (the newest rows removed).
    reason: str | None = None
    detail: str = ""

    @property
    def message(self) -> str:
        """One line for a person: intact with its row count and head, or where it broke."""
        if self.ok:
            return f"audit trail intact: {self.checked} rows, head {self.head}"
        where = f"row {self.bad_id}" if self.bad_id is not None else "the trail"
        return f"audit trail broken at {where}: {self.reason} ({self.detail})"


def verify(rt: Runtime) -> VerifyResult:
    """Recompute the chain in id order, in batches, and stop at the first row that is wrong."""
    with unit_of_work(rt.engine, write=False) as work:
        # One read transaction: a consistent snapshot, while writers carry on (WAL).
        connection = work.session.connection()
        table = SQLModel.metadata.tables["auditevent"]
        previous_id, previous_sha, checked = 0, GENESIS, 0
        while True:
            batch = connection.execute(
                table.select()
                .where(table.c.id > previous_id)
                .order_by(table.c.id)
                .limit(VERIFY_BATCH)
            ).mappings()
            rows = list(batch)
            if not rows:
                break
            for row in rows:
                problem = _check(row, previous_id, previous_sha)
                if problem is not None:
                    return VerifyResult(False, checked, previous_sha, row["id"], *problem)
                checked += 1
                previous_id, previous_sha = row["id"], row["sha256"]
        issued = _last_issued_id(connection)
    if issued > previous_id:
        detail = f"ids {previous_id + 1} to {issued} were issued and are gone"
        bad = previous_id or None
        return VerifyResult(False, checked, previous_sha, bad, MISSING_AFTER, detail)
    return VerifyResult(True, checked, previous_sha)


def _check(row: Mapping[Any, Any], previous_id: int, previous_sha: str) -> tuple[str, str] | None:
    """Why ``row`` breaks the chain after ``previous_id``, as (reason, detail); None if not."""
    if digest(row) != row["sha256"]:
        return ALTERED, f"row {row['id']} does not match its sha256"
    if row["id"] != previous_id + 1:
        return MISSING_BEFORE, f"ids {previous_id + 1} to {row['id'] - 1} are gone"
    if row["prev_sha256"] != previous_sha:
        where = f"row {previous_id}" if previous_id else "the genesis value"
        return MISSING_BEFORE, f"it does not chain from {where}: rows were removed or replaced"
    return None


def _next_id(newest: Any) -> int:
    """The id after the newest event's (``newest``: its (id, sha256) row, or None)."""
    return (newest[0] or 0) + 1 if newest else 1


def _last_issued_id(connection: Any) -> int:
    """The highest id SQLite has handed out (AUTOINCREMENT), 0 when there is no record of it.

    PostgreSQL keeps no such record (ids are the newest one's plus one there): removing the
    newest rows is found by SQLite's record only.
    """
    if connection.dialect.name != "sqlite":
        return 0
    # sqlite_sequence exists once any AUTOINCREMENT table does; a table made without one has none.
    if not connection.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'")
    ).first():
        return 0
    found = connection.execute(
        text("SELECT seq FROM sqlite_sequence WHERE name = :name"),
        {"name": AuditEvent.__tablename__},
    ).first()
    return int(found[0]) if found else 0
