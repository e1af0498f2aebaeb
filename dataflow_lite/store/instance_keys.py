"""The instance's own secrets: created on first run, kept in files of mode 0600.

``secret_key`` signs API keys (itsdangerous); ``password.key`` is the Fernet key that encrypts
passwords sent for endpoint activation and credentials kept at rest. Both live in the keys folder
(the ``keys_dir`` setting; the instance folder by default). Several hosts serving one PostgreSQL
catalog must hold the same two files; the catalog keeps a fingerprint of the keys it was first
opened with (:func:`check_fingerprint`), so a host with other keys stops at start with an error
naming the host whose keys to copy, instead of rejecting the others' API keys one by one.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine

from dataflow_lite.settings import ConfigError
from dataflow_lite.store import db
from dataflow_lite.store.models import InstanceKeys

SECRET_KEY_FILE, PASSWORD_KEY_FILE = "secret_key", "password.key"


class KeysMismatch(ConfigError):
    """This host's keys are not the ones the shared catalog was first opened with."""


def keys_folder(instance_path: Path, keys_dir: str) -> Path:
    """The folder holding the keys: ``keys_dir`` (relative to the instance folder), else the
    instance folder itself."""
    folder = (instance_path / keys_dir) if keys_dir else instance_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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


def instance_secret_key(folder: Path) -> bytes:
    """The key that signs API keys and session cookies, from the keys folder."""
    return load_or_create(folder / SECRET_KEY_FILE, _new_secret_key)


def key_file_names(adapter_key_files: Iterable[str] = ()) -> list[str]:
    """The key files hosts of one catalog share: the instance's two, then the adapters'."""
    return [SECRET_KEY_FILE, PASSWORD_KEY_FILE, *sorted(set(adapter_key_files))]


def fingerprint(folder: Path, adapter_key_files: Iterable[str] = ()) -> str:
    """A digest of the keys in ``folder`` (the instance's two, then the adapters' ``key_files``,
    made if missing): equal on hosts that share them, and revealing none."""
    digest = hashlib.sha256(b"dataflow-lite instance keys\0")
    keys = [(SECRET_KEY_FILE, _new_secret_key), (PASSWORD_KEY_FILE, _new_fernet)]
    keys += [(name, _new_adapter_key) for name in sorted(set(adapter_key_files))]
    for name, generate in keys:
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(load_or_create(folder / name, generate)).digest())
    return digest.hexdigest()[:32]


def check_fingerprint(
    engine: Engine, folder: Path, host: str, adapter_key_files: Iterable[str] = ()
) -> None:
    """Record the keys' fingerprint (and ``host``, whose keys they are) in a catalog that has
    none; raise KeysMismatch for others."""
    adapter_key_files = tuple(adapter_key_files)
    names = key_file_names(adapter_key_files)
    mine = fingerprint(folder, adapter_key_files)
    with db.session_scope(engine) as session:
        recorded = session.get(InstanceKeys, 1)
        if recorded is None:
            session.add(InstanceKeys(fingerprint=mine, host=host))
            return
    if recorded.fingerprint != mine:
        raise KeysMismatch(
            f"the keys in {folder} (fingerprint {mine}) are not the ones this catalog was first "
            f"opened with (fingerprint {recorded.fingerprint}, host {recorded.host}, "
            f"{recorded.recorded_at:%Y-%m-%d %H:%M} UTC): copy {', '.join(names)} from "
            "that host's keys folder, or point keys_dir at one shared folder of them"
        )


def _new_secret_key() -> bytes:
    return secrets.token_urlsafe(48).encode()


def _new_fernet() -> bytes:
    return Fernet.generate_key()


def _new_adapter_key() -> bytes:
    return secrets.token_hex(32).encode()


class PasswordCipher:
    """Encrypts and decrypts passwords with the instance's Fernet key."""

    def __init__(self, folder: Path) -> None:
        self._fernet = Fernet(load_or_create(folder / PASSWORD_KEY_FILE, _new_fernet))

    def encrypt(self, password: str) -> str:
        """The password encrypted with this server's key (URL-safe base64)."""
        return self._fernet.encrypt(password.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        """The password in ``token``, or None when this server's key did not encrypt it."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, UnicodeError):
            return None
