"""Failures of ssh, rsync and SFTP in plain words, each marked permanent or transient.

A permanent error is one that no retry can mend until a person acts: a refused login, a host key
that is unknown or has changed, a directory the account may not write, a full disk or quota, a
missing base path. Everything about the connection itself (refused, reset, timed out, the daemon
going away mid-transfer) is transient: the queue retries, and rsync resumes.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

import paramiko

from dataflow_lite.adapter import PERMANENT_ERRNOS, AdapterError


@dataclass(frozen=True)
class Where:
    """The host and files an error is about, for its message."""

    host: str
    port: int
    known_hosts: str

    @property
    def host_port(self) -> str:
        """The host as OpenSSH writes it in known_hosts: ``[host]:port`` unless port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def host_key_changed(self) -> AdapterError:
        """The host offered a key other than the one known_hosts holds for it."""
        return AdapterError(
            f"host key of {self.host_port} does not match known_hosts {self.known_hosts}: "
            "refusing to connect (if the host was reinstalled, replace its line after checking "
            "the new key's fingerprint)",
            permanent=True,
        )

    def host_key_unknown(self) -> AdapterError:
        """known_hosts holds no key for the host."""
        return AdapterError(
            f"host key of {self.host_port} is not in known_hosts {self.known_hosts}: refusing "
            f"to connect (add it with ssh-keyscan -p {self.port} {self.host} after checking "
            "its fingerprint)",
            permanent=True,
        )

    def refused(self) -> AdapterError:
        """Nothing listens on the host's SSH port."""
        return AdapterError(f"connection to {self.host_port} refused: is sshd running there?")

    def login_refused(self, username: str, with_password: bool) -> AdapterError:
        """The host refused the login of ``username``."""
        if with_password:
            reason = "wrong password or unknown user"
        else:
            reason = "the key is not in its authorized_keys"
        return AdapterError(
            f"{self.host_port} refused the login of {username}: {reason}", permanent=True
        )


def connect_error(
    error: BaseException, where: Where, username: str, password: bool
) -> AdapterError:
    """What went wrong while logging in with paramiko, in plain words."""
    if isinstance(error, paramiko.BadHostKeyException):
        return where.host_key_changed()
    if isinstance(error, paramiko.BadAuthenticationType):
        allowed = ", ".join(error.allowed_types) or "none"
        kind = "password" if password else "key"
        return AdapterError(
            f"{where.host_port} does not accept {kind} logins (it allows: {allowed})",
            permanent=True,
        )
    if isinstance(error, paramiko.AuthenticationException):
        return where.login_refused(username, password)
    if isinstance(error, paramiko.SSHException) and "known_hosts" in str(error):
        return where.host_key_unknown()
    if isinstance(error, socket.gaierror):
        return AdapterError(f"cannot resolve the host name {where.host}: {error.strerror}")
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return where.refused()
    if isinstance(error, TimeoutError | socket.timeout):
        return AdapterError(f"connection to {where.host_port} timed out")
    return AdapterError(f"connection to {where.host_port} failed: {error or type(error).__name__}")


def sftp_error(what: str, error: BaseException, where: Where) -> AdapterError:
    """An SFTP operation failed: a refusal by the host is permanent, a lost connection is not."""
    if isinstance(error, AdapterError):
        return error
    if isinstance(error, OSError) and error.errno is not None:
        detail = error.strerror or str(error)
        return AdapterError(
            f"{what} on {where.host_port}: {detail}", permanent=error.errno in PERMANENT_ERRNOS
        )
    if isinstance(error, paramiko.SSHException | EOFError | ConnectionError | TimeoutError):
        return AdapterError(f"{what} on {where.host_port}: connection lost ({error})")
    if isinstance(error, OSError):  # the SFTP server's bare "Failure", and the like
        return AdapterError(f"{what} on {where.host_port}: {error}")
    raise error


# ssh's "Permission denied (publickey,password)." names the methods it tried, unlike a refused
# write ("Permission denied (13)").
LOGIN_REFUSED = re.compile(
    r"permission denied \((publickey|password|keyboard-interactive|gssapi|hostbased)"
    r"|too many authentication failures"
)

# Lines of ssh's and rsync's stderr, lowercased, and what they mean: (needle, permanent, words).
RSYNC_MEANINGS: tuple[tuple[str, bool, str], ...] = (
    ("no space left on device", True, "no space left on the host's disk"),
    ("disk quota exceeded", True, "disk quota exceeded on the host"),
    ("read-only file system", True, "the host's filesystem is read-only"),
    ("permission denied", True, "permission denied on the host"),
    ("operation not permitted", True, "permission denied on the host"),
    ("no such file or directory", True, "a directory is missing on the host"),
    ("connection reset", False, "connection reset"),
    ("connection timed out", False, "connection timed out"),
    ("timed out", False, "connection timed out"),
    ("io timeout", False, "the connection stalled"),
    ("broken pipe", False, "connection lost"),
    ("connection closed", False, "connection lost"),
    ("connection unexpectedly closed", False, "connection lost"),
    ("no route to host", False, "no route to the host"),
    ("network is unreachable", False, "the network is unreachable"),
    ("could not resolve hostname", False, "cannot resolve the host name"),
)

# rsync exit codes that mean a bug or a mismatch of versions: retrying repeats them.
RSYNC_PERMANENT_CODES = {1, 2, 4}


def rsync_error(
    code: int, stderr: str, where: Where, username: str, password: bool
) -> AdapterError:
    """rsync exited with ``code``: say why in plain words, from its stderr and ssh's."""
    text = stderr.lower()
    if "remote host identification has changed" in text or "has changed and you have" in text:
        return where.host_key_changed()
    if "host key is known for" in text or "host key verification failed" in text:
        return where.host_key_unknown()
    if LOGIN_REFUSED.search(text):
        return where.login_refused(username, password)
    if "connection refused" in text:
        return where.refused()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for needle, permanent, words in RSYNC_MEANINGS:
        if needle in text:
            evidence = next(line for line in lines if needle in line.lower())
            return AdapterError(
                f"rsync to {where.host_port} failed: {words} ({evidence})", permanent=permanent
            )
    last = lines[-1] if lines else "no message"
    return AdapterError(
        f"rsync to {where.host_port} failed with exit code {code}: {last}",
        permanent=code in RSYNC_PERMANENT_CODES,
    )
