"""Logging in with a username and a password: login methods, hashes, and the failed-login throttle.

A login method checks a username and a password and answers with the user they prove, or None.
Local passwords (argon2id hashes in the catalog) are the one method today; a directory (LDAP,
OpenID Connect) would be another ``LoginMethod`` in ``LOGIN_METHODS``, tried in order.

Failed logins are counted in the catalog (table ``loginthrottle``) rather than in a rate
limiter's memory: gunicorn runs several worker processes, and each would keep its own count.
Hashing is slow on purpose, so it runs outside any transaction: a login never holds the
catalog's write lock while argon2 works.
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
from sqlmodel import Session, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.store.db import unit_of_work
from dataflow_lite.store.models import LoginThrottle, User, utcnow

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
# Failed logins allowed per window: for one username from one address, and from one address
# for any username (higher: many users may share an address behind a NAT).
USER_FAILURES = 5
ADDRESS_FAILURES = 20
THROTTLE_WINDOW = timedelta(minutes=15)

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


def password_fingerprint(user: User) -> str:
    """A short digest of the user's password hash: a new password voids older sessions."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


class LoginMethod(abc.ABC):
    """A way to prove who one is with a username and a password."""

    #: Kept in the session, to say how the user logged in.
    name: ClassVar[str]

    @abc.abstractmethod
    def authenticate(self, rt: Runtime, username: str, password: str) -> User | None:
        """The user (active or not) that these credentials prove, or None."""


class LocalPasswords(LoginMethod):
    """Passwords whose argon2 hashes the catalog keeps (``User.password_hash``)."""

    name = "local"

    def authenticate(self, rt: Runtime, username: str, password: str) -> User | None:
        with unit_of_work(rt.engine, write=False) as work:
            user = work.session.exec(select(User).where(User.username == username)).first()
        stored = user.password_hash if user is not None else None
        try:
            _hasher.verify(stored or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or stored is None:
            return None
        if _hasher.check_needs_rehash(stored):
            rehashed = hash_password(password)
            with unit_of_work(rt.engine, audited=False) as work:
                row = work.session.get(User, user.id)
                if row is not None and row.password_hash == stored:
                    row.password_hash = rehashed
                    # The session's fingerprint is of the hash now stored, not the old one.
                    user.password_hash = rehashed
        return user


#: The login methods, tried in order.
LOGIN_METHODS: tuple[LoginMethod, ...] = (LocalPasswords(),)


class LoginRefused(Exception):
    """A login that did not succeed, with the message to show; ``retry_after`` when throttled.

    ``deactivated`` says the credentials were right but the account is switched off.
    """

    def __init__(
        self,
        message: str,
        *,
        throttled: bool = False,
        retry_after: int = 0,
        deactivated: bool = False,
    ) -> None:
        super().__init__(message)
        self.throttled = throttled
        self.retry_after = retry_after
        self.deactivated = deactivated


@dataclass(frozen=True)
class LoggedIn:
    """Who logged in, and by which method."""

    user: User
    method: str


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


def login(rt: Runtime, username: str, password: str, address: str | None) -> LoggedIn:
    """The user these credentials prove, or LoginRefused; failures are counted.

    Not a use case with an identity: this is how a web session's identity comes to be.
    """
    limits = _limits(username, address)
    now = utcnow()
    with unit_of_work(rt.engine, write=False) as work:
        wait = _locked_for(work.session, limits, now)
    if wait is not None:
        minutes = max(1, round(wait.total_seconds() / 60))
        raise LoginRefused(
            f"Too many failed logins: try again in {minutes} minute{'s' * (minutes != 1)}.",
            throttled=True,
            retry_after=int(wait.total_seconds()) + 1,
        )
    for method in LOGIN_METHODS:
        user = method.authenticate(rt, username, password)
        if user is not None:
            break
    else:
        with unit_of_work(rt.engine, audited=False) as work:
            _count_failure(work.session, limits, now)
        raise LoginRefused("Wrong username or password.")
    if not user.is_active:
        raise LoginRefused("This account is deactivated: ask an administrator.", deactivated=True)
    with unit_of_work(rt.engine, audited=False) as work:
        row = work.session.get(LoginThrottle, limits[0].key)
        if row is not None:
            work.session.delete(row)
    return LoggedIn(user, method.name)


def session_user(rt: Runtime, user_id: object, fingerprint: object) -> User | None:
    """The active user a web session names, or None when the session is over.

    A session from before the user's password last changed is over.
    """
    if not isinstance(user_id, int):
        return None
    with unit_of_work(rt.engine, write=False) as work:
        user = work.session.get(User, user_id)
    if user is None or not user.is_active:
        return None
    return user if hmac.compare_digest(str(fingerprint), password_fingerprint(user)) else None
