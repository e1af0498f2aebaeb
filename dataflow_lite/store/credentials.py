"""Users' credentials for endpoints, kept encrypted at rest with the instance's Fernet key."""

from __future__ import annotations

from sqlmodel import Session

from dataflow_lite.adapter import Credentials
from dataflow_lite.store.instance_keys import PasswordCipher
from dataflow_lite.store.models import EndpointCredential


def store(
    session: Session, cipher: PasswordCipher, user_id: int, endpoint_id: str, kept: Credentials
) -> None:
    """Keep (or replace) ``user_id``'s credentials for ``endpoint_id``."""
    session.merge(
        EndpointCredential(
            user_id=user_id,
            endpoint_id=endpoint_id,
            username=kept.username,
            secret_encrypted=cipher.encrypt(kept.secret),
        )
    )


def load(
    session: Session, cipher: PasswordCipher, user_id: int, endpoint_id: str
) -> Credentials | None:
    """``user_id``'s credentials for ``endpoint_id``, or None when none were kept."""
    row = session.get(EndpointCredential, (user_id, endpoint_id))
    if row is None:
        return None
    secret = cipher.decrypt(row.secret_encrypted)
    return Credentials(row.username, secret) if secret is not None else None
