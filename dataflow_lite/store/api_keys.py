"""API keys: issued once, stored as a hash, verified and revoked.

A key is an itsdangerous-signed pair (key id, random secret). The signature rejects forged or
mangled keys before the catalog is read; the catalog keeps only the secret's sha256, the expiry
and the revocation, so a stolen database yields no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import Session

from dataflow_lite.store.models import ApiKey, User, row_id, utcnow

SALT = "dataflow-lite.api-key"
# last_used_at is written at most this often per key, so reads stay reads.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _serializer(secret_key: bytes) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=SALT)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key(
    session: Session, secret_key: bytes, user: User, name: str = "", days: int | None = None
) -> tuple[ApiKey, str]:
    """Create a key for ``user``; return its row and the key itself, which is never stored."""
    secret = secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(days=days) if days else None
    row = ApiKey(
        user_id=row_id(user), secret_sha256=_digest(secret), name=name, expires_at=expires_at
    )
    session.add(row)
    session.flush()
    return row, _serializer(secret_key).dumps([row.id, secret])


class KeyRejected(Exception):
    """The key is missing, malformed, unknown, expired or revoked; the message says which."""


def verify_key(session: Session, secret_key: bytes, key: str) -> tuple[User, ApiKey]:
    """Return the active user and key row that ``key`` belongs to, or raise KeyRejected."""
    try:
        key_id, secret = _serializer(secret_key).loads(key)
        row = session.get(ApiKey, int(key_id))
    except (BadSignature, ValueError, TypeError) as error:
        raise KeyRejected("the API key is malformed or was not issued by this server") from error
    if row is None or not hmac.compare_digest(row.secret_sha256, _digest(str(secret))):
        raise KeyRejected("the API key is not known to this server")
    now = utcnow()
    if row.revoked_at is not None:
        raise KeyRejected("the API key has been revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise KeyRejected(f"the API key expired on {row.expires_at:%Y-%m-%d %H:%M} UTC")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise KeyRejected("the API key's user is deactivated")
    return user, row


def key_id_of(secret_key: bytes, key: str) -> int | None:
    """The id inside a key this server issued, or None for anything else."""
    try:
        return int(_serializer(secret_key).loads(key)[0])
    except (BadSignature, ValueError, TypeError, IndexError):
        return None


def revoke(row: ApiKey, when: datetime | None = None) -> None:
    """Mark the key revoked (kept for the record, never accepted again)."""
    row.revoked_at = when or utcnow()
