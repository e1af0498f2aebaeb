"""Logging in to the web pages: login methods, the signed session, and the failed-login throttle.

A login method checks a username and a password and answers with the user they prove, or None.
Local passwords (argon2id hashes in the catalog) are the one method today; a directory (LDAP,
OpenID Connect) would be another ``LoginMethod`` appended to the app's list, tried in order.

Failed logins are counted in the catalog (table ``loginthrottle``) rather than in a rate
limiter's memory: gunicorn runs several worker processes, and each would keep its own count.

The session is Flask's signed cookie, holding only the user's id: every request reads the user
again, so a deactivated user is out at once.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g
from flask import session as cookie
from sqlmodel import Session, select

from dataflow_lite.store.db import get_session
from dataflow_lite.store.models import LoginThrottle, User, utcnow

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
# Failed logins allowed per window: for one username from one address, and from one address
# for any username (higher: many users may share an address behind a NAT).
USER_FAILURES = 5
ADDRESS_FAILURES = 20
THROTTLE_WINDOW = timedelta(minutes=15)
SESSION_USER = "user_id"
SESSION_METHOD = "login_method"
SESSION_PASSWORD = "password_fingerprint"

_hasher = PasswordHasher()
# Checked when the username is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("no such user")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``, with a fresh salt."""
    return _hasher.hash(password)


def check_new_password(password: str) -> str:
    """Return ``password`` if it is acceptable as a new password, else raise ValueError."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    return password


class LoginMethod(abc.ABC):
    """A way to prove who one is with a username and a password."""

    #: Kept in the session, to say how the user logged in.
    name: ClassVar[str]

    @abc.abstractmethod
    def authenticate(self, session: Session, username: str, password: str) -> User | None:
        """The user (active or not) that these credentials prove, or None."""


class LocalPasswords(LoginMethod):
    """Passwords whose argon2 hashes the catalog keeps (``User.password_hash``)."""

    name = "local"

    def authenticate(self, session: Session, username: str, password: str) -> User | None:
        user = session.exec(select(User).where(User.username == username)).first()
        stored = user.password_hash if user is not None else None
        try:
            _hasher.verify(stored or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or stored is None:
            return None
        if _hasher.check_needs_rehash(stored):
            user.password_hash = hash_password(password)
        return user


class LoginRefused(Exception):
    """A login that did not succeed, with the status and the message to show."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Limit:
    key: str
    failures: int


def _limits(username: str, address: str | None) -> list[_Limit]:
    # A username is counted per address, so that nobody elsewhere can lock its owner out.
    where = address or "unknown"
    return [
        _Limit(f"user:{username.lower()}@{where}", USER_FAILURES),
        _Limit(f"address:{where}", ADDRESS_FAILURES),
    ]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _locked_for(session: Session, limits: list[_Limit], now: datetime) -> timedelta | None:
    """How long logins stay refused for these keys, or None when they are allowed."""
    waits = []
    for limit in limits:
        row = session.get(LoginThrottle, limit.key)
        if row is not None and row.failures >= limit.failures:
            ends = _aware(row.window_start) + THROTTLE_WINDOW
            if ends > now:
                waits.append(ends - now)
    return max(waits) if waits else None


def _count_failure(session: Session, limits: list[_Limit], now: datetime) -> None:
    for limit in limits:
        row = session.get(LoginThrottle, limit.key)
        if row is None or _aware(row.window_start) + THROTTLE_WINDOW <= now:
            session.merge(LoginThrottle(key=limit.key, failures=1, window_start=now))
        else:
            row.failures += 1


def login_methods() -> list[LoginMethod]:
    """The app's login methods, in the order they are tried."""
    return current_app.extensions["dataflow_lite.login_methods"]


def attempt_login(session: Session, username: str, password: str, address: str | None) -> User:
    """The user these credentials prove, or LoginRefused; failures are counted in ``session``."""
    limits = _limits(username, address)
    now = utcnow()
    if (wait := _locked_for(session, limits, now)) is not None:
        minutes = max(1, round(wait.total_seconds() / 60))
        raise LoginRefused(
            429,
            f"Too many failed logins: try again in {minutes} minute{'s' * (minutes != 1)}.",
            retry_after=int(wait.total_seconds()) + 1,
        )
    for method in login_methods():
        user = method.authenticate(session, username, password)
        if user is not None:
            break
    else:
        _count_failure(session, limits, now)
        raise LoginRefused(400, "Wrong username or password.")
    if not user.is_active:
        raise LoginRefused(403, "This account is deactivated: ask an administrator.")
    row = session.get(LoginThrottle, limits[0].key)
    if row is not None:
        session.delete(row)
    g.login_method = method.name
    return user


def start_session(user: User) -> None:
    """Log ``user`` in: a new session (never one that existed before the login)."""
    cookie.clear()
    cookie.permanent = True
    cookie[SESSION_USER] = user.id
    cookie[SESSION_PASSWORD] = password_fingerprint(user)
    cookie[SESSION_METHOD] = g.get("login_method", LocalPasswords.name)


def end_session() -> None:
    """Log out: forget the session, its CSRF token included."""
    cookie.clear()


def password_fingerprint(user: User) -> str:
    """A short digest of the user's password hash: a new password voids older sessions."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


def session_user() -> User | None:
    """The active user logged in to this request's session, or None.

    A session from before the user's password last changed is over.
    """
    if "session_user" not in g:
        user_id = cookie.get(SESSION_USER)
        user = get_session().get(User, user_id) if isinstance(user_id, int) else None
        current = (
            user is not None
            and user.is_active
            and hmac.compare_digest(
                str(cookie.get(SESSION_PASSWORD, "")), password_fingerprint(user)
            )
        )
        g.session_user = user if current else None
    return g.session_user
