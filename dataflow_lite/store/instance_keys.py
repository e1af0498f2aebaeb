"""The instance's own secrets: created on first run, kept in files of mode 0600.

``secret_key`` signs API keys (itsdangerous); ``password.key`` is the Fernet key that encrypts
passwords sent for endpoint activation and credentials kept at rest.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


def load_or_create(path: Path, generate: Callable[[], bytes]) -> bytes:
    """Read the secret at ``path``, creating it atomically (mode 0600) if it does not exist.

    Several workers may start at once: each writes a private temporary file and links it to
    ``path``; the first link wins and the others read the winner's secret.
    """
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, generate())
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)
    return path.read_bytes().strip()


def instance_secret_key(instance_path: Path) -> bytes:
    """The key that signs API keys and session cookies."""
    return load_or_create(instance_path / "secret_key", lambda: secrets.token_urlsafe(48).encode())


class PasswordCipher:
    """Encrypts and decrypts passwords with the instance's Fernet key."""

    def __init__(self, instance_path: Path) -> None:
        self._fernet = Fernet(load_or_create(instance_path / "password.key", Fernet.generate_key))

    def encrypt(self, password: str) -> str:
        """The password encrypted with this server's key (URL-safe base64)."""
        return self._fernet.encrypt(password.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        """The password in ``token``, or None when this server's key did not encrypt it."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, UnicodeError):
            return None
