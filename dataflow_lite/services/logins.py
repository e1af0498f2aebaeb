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
from datetime import datetime, timedelta
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


def _account_limit(username: str, address: str | None) -> _Limit:
    # An account is counted per address, so that nobody elsewhere can lock its owner out.
    return _Limit(f"user:{username.lower()}@{address or 'unknown'}", USER_FAILURES)


def _address_limit(address: str | None) -> _Limit:
    return _Limit(f"address:{address or 'unknown'}", ADDRESS_FAILURES)


def _locked_for(session: Session, limit: _Limit, now: datetime) -> timedelta | None:
    """How long logins stay refused for this key, or None when they are allowed."""
    row = session.get(LoginThrottle, limit.key)
    if row is not None and row.failures >= limit.failures:
        ends = row.window_start + THROTTLE_WINDOW
        if ends > now:
            return ends - now
    return None


def _count_failure(session: Session, limits: list[_Limit], now: datetime) -> None:
    for limit in limits:
        row = session.get(LoginThrottle, limit.key)
        if row is None or row.window_start + THROTTLE_WINDOW <= now:
            session.merge(LoginThrottle(key=limit.key, failures=1, window_start=now))
        else:
            row.failures += 1


def _throttled(wait: timedelta) -> LoginRefused:
    minutes = max(1, round(wait.total_seconds() / 60))
    return LoginRefused(
        f"Too many failed logins: try again in {minutes} minute{'s' * (minutes != 1)}.",
        throttled=True,
        retry_after=int(wait.total_seconds()) + 1,
    )


def login(rt: Runtime, username: str, password: str, address: str | None) -> LoggedIn:
    """The user these credentials prove, or LoginRefused; failures are counted.

    Failures are counted twice, apart: for the account (from this address) and for the address
    (any name). An account over its count is refused even the right password. An address over
    its count only changes how wrong answers are refused (throttled, whatever the name): the
    right password still logs its user in, so guesses at made-up names from an address shared
    by many (a NAT, a proxy) never lock out the real users behind it.

    Not a use case with an identity: this is how a web session's identity comes to be.
    """
    account, from_address = _account_limit(username, address), _address_limit(address)
    now = utcnow()
    with unit_of_work(rt.engine, write=False) as work:
        account_wait = _locked_for(work.session, account, now)
        address_wait = _locked_for(work.session, from_address, now)
    if account_wait is not None:
        raise _throttled(account_wait)
    for method in LOGIN_METHODS:
        user = method.authenticate(rt, username, password)
        if user is not None:
            break
    else:
        with unit_of_work(rt.engine, audited=False) as work:
            _count_failure(work.session, [account, from_address], now)
        if address_wait is not None:
            raise _throttled(address_wait)
        raise LoginRefused("Wrong username or password.")
    if not user.is_active:
        raise LoginRefused("This account is deactivated: ask an administrator.", deactivated=True)
    with unit_of_work(rt.engine, audited=False) as work:
        row = work.session.get(LoginThrottle, account.key)
        if row is not None:
            work.session.delete(row)
    return LoggedIn(user, method.name)


def end_sessions(rt: Runtime, user_id: object) -> None:
    """End every web session of the user (a logout): their session generation goes up."""
    if not isinstance(user_id, int):
        return
    with unit_of_work(rt.engine, audited=False) as work:
        user = work.session.get(User, user_id)
        if user is not None:
            user.session_generation += 1


def session_user(
    rt: Runtime, user_id: object, fingerprint: object, generation: object
) -> User | None:
    """The active user a web session names, or None when the session is over.

    A session from before the user's password last changed, or from before they last logged
    out (its generation is older than the user's), is over.
    """
    if not isinstance(user_id, int) or not isinstance(generation, int):
        return None
    with unit_of_work(rt.engine, write=False) as work:
        user = work.session.get(User, user_id)
    if user is None or not user.is_active or generation != user.session_generation:
        return None
    return user if hmac.compare_digest(str(fingerprint), password_fingerprint(user)) else None
