"""Users and their API keys: added and changed by administrators, keys by their owners too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit
from dataflow_lite.services.errors import Conflict, NotFound, invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.logins import check_new_password, hash_password
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import api_keys, catalog
from dataflow_lite.store.db import unit_of_work
from dataflow_lite.store.models import ApiKey, User, row_id, utcnow

MAX_NAME = 150
MAX_KEY_NAME = 200
MAX_KEY_DAYS = 100 * 366
USER_CHANGES = ("deactivate", "reactivate", "make-admin", "unmake-admin")


def _new_hash(password: str) -> str:
    """The hash of an acceptable new password; computed before any transaction begins."""
    try:
        return hash_password(check_new_password(password))
    except ValueError as error:
        raise invalid("password", str(error)) from error


def _by_name(session: Session, username: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user {username!r}: add one with 'dataflow-lite user add'")
    return user


def _user(session: Session, username_or_id: str | int) -> User:
    """The user named (the CLI) or numbered (the admin page)."""
    if isinstance(username_or_id, str):
        return _by_name(session, username_or_id)
    user = catalog.find(session, User, username_or_id)
    if user is None:
        raise NotFound(f"user {username_or_id} not found")
    return user


@use_case("user.list")
def list_users(rt: Runtime, identity: Identity) -> Sequence[User]:
    """Every user, by username."""
    authorize(identity, "user.list")
    with unit_of_work(rt.engine, write=False) as work:
        return work.session.exec(select(User).order_by(col(User.username))).all()


@use_case("user.add")
def add_user(
    rt: Runtime,
    identity: Identity,
    username: str,
    name: str = "",
    *,
    is_admin: bool = False,
    password: str | None = None,
) -> User:
    """Add a user, with a web password or without (API keys only)."""
    authorize(identity, "user.add")
    username = username.strip()
    if not username or len(username) > MAX_NAME or any(c.isspace() for c in username):
        raise invalid("username", f"a username is 1 to {MAX_NAME} characters, without spaces")
    password_hash = _new_hash(password) if password is not None else None
    with unit_of_work(rt.engine) as work:
        if work.session.exec(select(User).where(User.username == username)).first():
            raise Conflict(f"user {username!r} exists already")
        user = User(
            username=username, name=name.strip(), is_admin=is_admin, password_hash=password_hash
        )
        work.session.add(user)
        work.session.flush()
        summary = {"username": username, "name": user.name, "is_admin": is_admin}
        audit.record(work, identity, "user.add", "user", user.id, summary)
        return user


@use_case("user.change")
def set_password(rt: Runtime, identity: Identity, username_or_id: str | int, password: str) -> User:
    """Set a user's web password; their older web sessions end."""
    authorize(identity, "user.change")
    password_hash = _new_hash(password)
    with unit_of_work(rt.engine) as work:
        user = _user(work.session, username_or_id)
        user.password_hash = password_hash
        user.session_generation += 1
        audit.record(work, identity, "user.change", "user", user.id, {"password": "changed"})
        return user


@use_case("user.change")
def change_user(rt: Runtime, identity: Identity, user_id: int, change: str) -> User:
    """Deactivate or reactivate a user, or make or unmake an administrator."""
    authorize(identity, "user.change")
    if change not in USER_CHANGES:
        raise invalid("change", f"unknown change {change!r}: one of {', '.join(USER_CHANGES)}")
    if identity.owns(user_id) and change in ("deactivate", "unmake-admin"):
        raise Conflict("you cannot do that to your own account")
    with unit_of_work(rt.engine) as work:
        user = _user(work.session, user_id)
        before = {"is_active": user.is_active, "is_admin": user.is_admin}
        if change in ("deactivate", "reactivate"):
            user.is_active = change == "reactivate"
        else:
            user.is_admin = change == "make-admin"
        after = {"is_active": user.is_active, "is_admin": user.is_admin}
        audit.record(work, identity, "user.change", "user", user.id, audit.changes(before, after))
        return user


@dataclass(frozen=True)
class IssuedKey:
    """A new API key: its row, and the key itself, shown once and never stored."""

    row: ApiKey
    key: str


def _key_owner(session: Session, identity: Identity, username: str | None, action: str) -> User:
    """The user named (or the identity's own), if the identity may ``action`` their keys."""
    if username is None:
        if identity.user is None:
            raise invalid("username", "name the user whose keys these are")
        user = identity.user
    else:
        user = _by_name(session, username)
    # The policy's owner rules read ``user_id``: a key row owned by the user stands in.
    authorize(identity, action, ApiKey(user_id=row_id(user), secret_sha256=""))
    return user


@use_case("key.issue")
def issue_key(
    rt: Runtime,
    identity: Identity,
    username: str | None = None,
    name: str = "",
    days: int | None = None,
) -> IssuedKey:
    """Issue an API key for a user (default: the identity's own), expiring after ``days``."""
    name = name.strip()
    if len(name) > MAX_KEY_NAME:
        raise invalid("name", f"must be at most {MAX_KEY_NAME} characters long")
    if days is not None and not 1 <= days <= MAX_KEY_DAYS:
        raise invalid("expires_days", f"must be a whole number from 1 to {MAX_KEY_DAYS}")
    days = days or rt.settings["api_key_days"] or None
    with unit_of_work(rt.engine) as work:
        user = _key_owner(work.session, identity, username, "key.issue")
        row, key = api_keys.issue_key(work.session, rt.secret_key, user, name, days)
        summary = {"user_id": user.id, "name": name, "expires_at": row.expires_at}
        audit.record(work, identity, "key.issue", "api_key", row.id, summary)
        return IssuedKey(row, key)


@use_case("key.list")
def list_keys(rt: Runtime, identity: Identity, username: str | None = None) -> Sequence[ApiKey]:
    """A user's keys (never the keys themselves), newest first."""
    with unit_of_work(rt.engine, write=False) as work:
        user = _key_owner(work.session, identity, username, "key.list")
        return work.session.exec(
            select(ApiKey).where(ApiKey.user_id == user.id).order_by(col(ApiKey.id).desc())
        ).all()


@use_case("key.revoke")
def revoke_key(rt: Runtime, identity: Identity, key_or_id: str | int) -> ApiKey:
    """Revoke a key, given the key itself or its id; kept for the record, never accepted again."""
    key_id = (
        key_or_id
        if isinstance(key_or_id, int)
        else int(key_or_id)
        if key_or_id.isascii() and key_or_id.isdigit()
        else api_keys.key_id_of(rt.secret_key, key_or_id)
    )
    with unit_of_work(rt.engine) as work:
        row = catalog.find(work.session, ApiKey, key_id) if key_id is not None else None
        if row is None:
            raise NotFound("no such API key")
        authorize(identity, "key.revoke", row)
        if row.revoked_at is None:
            api_keys.revoke(row, utcnow())
            audit.record(work, identity, "key.revoke", "api_key", row.id, {"user_id": row.user_id})
        return row


def authenticate(rt: Runtime, key: str, address: str | None) -> Identity:
    """The identity an API key proves, or ``api_keys.KeyRejected`` saying why not.

    Not a use case: this is how an API request's identity comes to be. ``last_used_at`` is
    written at most once a minute per key, so most requests write nothing.
    """
    with unit_of_work(rt.engine, write=False) as work:
        user, row = api_keys.verify_key(work.session, rt.secret_key, key)
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > api_keys.LAST_USED_RESOLUTION:
        with unit_of_work(rt.engine, audited=False) as work:
            stored = work.session.get(ApiKey, row.id)
            if stored is not None:
                stored.last_used_at = now
    return Identity(user, f"api-key {row.id}", address)
