"""Short paramiko sessions with the host: login, SFTP, commands over an exec channel.

Every session checks the host key against the endpoint's known_hosts file (an unknown or changed
key refuses the connection), never asks an agent or reads ``~/.ssh``, and is closed on the way out
of its ``with`` block. Commands run only where the host gives a shell: SFTP-only hosts (a
``ForceCommand internal-sftp``) answer an exec request with the SFTP server, which the probe tells
apart by its missing marker line.
"""

from __future__ import annotations

import json
import posixpath
import shlex
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import paramiko
from paramiko.sftp import CMD_EXTENDED

from dataflow_lite.adapter import AdapterError

from .errors import Where, connect_error, sftp_error


class _RawRequests(Protocol):
    """The request call that paramiko's SFTPClient has but does not publish (nor its stubs)."""

    def _request(self, t: int, *args: object) -> tuple[int, paramiko.Message | None]: ...


TIMEOUT = 20
PROBE_MARKER = "dataflow-lite-exec"
TOOLS = ("rsync", "python3", "openssl", "sha256sum", "df")

# One line of Python that prints a file's sha256, for hosts with python3 (faster than sha256sum).
PYTHON_SHA256 = (
    "import hashlib,sys;h=hashlib.sha256();f=open(sys.argv[1],'rb');"
    "[h.update(b) for b in iter(lambda:f.read(1<<20),b'')];print(h.hexdigest())"
)


# A Python program that prints, as JSON, the sha256 of each NUL-separated path on its stdin:
# one ssh command verifies a whole batch.
PYTHON_SHA256_MANY = """
import hashlib, json, sys
out = []
for path in sys.stdin.buffer.read().split(b"\\0")[:-1]:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
        out.append(["sha256", h.hexdigest()])
    except FileNotFoundError:
        out.append(["missing", ""])
    except OSError as e:
        out.append(["error", e.strerror or str(e)])
print(json.dumps(out))
"""


def as_opened(path: str) -> str:
    """``path`` as a program on the host opens it (relative to the home directory)."""
    return path if path.startswith("/") else "./" + path


@dataclass(frozen=True)
class Login:
    """Who logs in, and how: with the endpoint's key file or with a password from activation."""

    username: str
    password: str | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class Capabilities:
    """What the host runs besides SFTP, as one probe found out."""

    exec: bool
    tools: frozenset[str]

    @property
    def hasher(self) -> str | None:
        """The fastest tool the host has to hash a file, if any."""
        return next(
            (tool for tool in ("python3", "openssl", "sha256sum") if tool in self.tools), None
        )


def remote_argument(path: str) -> str:
    """``path`` quoted for the host's shell, never mistaken for an option."""
    return shlex.quote(as_opened(path))


def load_key(key_file: Path) -> paramiko.PKey:
    """The endpoint's private key, or a permanent error saying why it cannot be used."""
    try:
        return paramiko.PKey.from_path(key_file)
    except paramiko.PasswordRequiredException:
        raise AdapterError(
            f"key_file {key_file} is protected by a passphrase: give a key without one",
            permanent=True,
        ) from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise AdapterError(f"cannot read key_file {key_file}: {reason}", permanent=True) from None
    except (paramiko.SSHException, ValueError) as error:
        raise AdapterError(f"cannot use key_file {key_file}: {error}", permanent=True) from None


class HostSession:
    """One logged-in connection; SFTP opened on first use."""

    def __init__(self, client: paramiko.SSHClient, where: Where) -> None:
        self.client = client
        self.where = where
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The session's SFTP client."""
        if self._sftp is None:
            try:
                self._sftp = self.client.open_sftp()
            except (OSError, paramiko.SSHException, EOFError) as error:
                raise sftp_error("cannot start SFTP", error, self.where) from error
        return self._sftp

    def close(self) -> None:
        """Close SFTP and the connection."""
        try:
            if self._sftp is not None:
                self._sftp.close()
        finally:
            self.client.close()

    def run(
        self, command: str, timeout: float = TIMEOUT, stdin: bytes = b""
    ) -> tuple[int, str, str]:
        """Run ``command`` over an exec channel (given ``stdin``); its exit status, stdout and
        stderr.

        Raises paramiko.SSHException when the host refuses exec requests.
        """
        transport = self.client.get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=TIMEOUT)
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            channel.sendall(stdin)
            channel.shutdown_write()  # an SFTP server forced in place of the command sees EOF
            with channel.makefile("rb") as out, channel.makefile_stderr("rb") as err:
                stdout, stderr = out.read(), err.read()
            return (
                channel.recv_exit_status(),
                stdout.decode(errors="replace"),
                stderr.decode(errors="replace"),
            )
        finally:
            channel.close()

    def capabilities(self) -> Capabilities:
        """Whether the host runs commands, and which of the tools we use it has."""
        probe = (
            f"echo {PROBE_MARKER}; "
            f"for t in {' '.join(TOOLS)}; do command -v $t >/dev/null 2>&1 && echo $t; done"
        )
        try:
            _, stdout, _ = self.run(probe)
        except (TimeoutError, paramiko.SSHException):
            return Capabilities(False, frozenset())
        except (OSError, EOFError) as error:
            raise sftp_error("cannot probe the host", error, self.where) from error
        lines = stdout.split()
        if not lines or lines[0] != PROBE_MARKER:
            return Capabilities(False, frozenset())
        return Capabilities(True, frozenset(lines[1:]) & set(TOOLS))

    def sha256(self, path: str, hasher: str, size: int) -> str:
        """The sha256 of ``path``, computed on the host by ``hasher``."""
        target = remote_argument(path)
        command = {
            "python3": f"python3 -c {shlex.quote(PYTHON_SHA256)} {target}",
            "openssl": f"openssl dgst -sha256 -r {target}",
            "sha256sum": f"sha256sum {target}",
        }[hasher]
        # Hashing runs at disk speed: allow for slow disks on large files.
        try:
            status, stdout, stderr = self.run(command, timeout=120 + size / 20e6)
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise sftp_error(f"cannot hash {path}", error, self.where) from error
        words = stdout.split()
        if status != 0 or not words or len(words[0]) != 64:
            detail = stderr.strip() or f"{hasher} exited with {status}"
            raise AdapterError(
                f"cannot hash {path} on {self.where.host_port}: {detail}",
                permanent="permission denied" in detail.lower(),
            )
        return words[0].lower()

    def sha256_many(self, paths: list[str], size: int) -> list[str | None | AdapterError]:
        """The sha256 of each of ``paths`` (``size`` bytes in all), computed on the host by one
        python3 command that reads the paths on its stdin: a hash, None for a missing file, or
        the error that file alone met."""
        listing = b"".join(as_opened(path).encode() + b"\0" for path in paths)
        try:
            status, stdout, stderr = self.run(
                f"python3 -c {shlex.quote(PYTHON_SHA256_MANY)}",
                timeout=120 + size / 20e6,
                stdin=listing,
            )
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise sftp_error(f"cannot hash {len(paths)} files", error, self.where) from error
        try:
            answers = json.loads(stdout)
        except ValueError:
            answers = None
        if status != 0 or not isinstance(answers, list) or len(answers) != len(paths):
            detail = stderr.strip() or f"python3 exited with {status}"
            raise AdapterError(f"cannot hash files on {self.where.host_port}: {detail}")
        hashes: list[str | None | AdapterError] = []
        for path, (kind, value) in zip(paths, answers, strict=True):
            if kind == "sha256":
                hashes.append(value)
            elif kind == "missing":
                hashes.append(None)
            else:
                hashes.append(
                    AdapterError(
                        f"cannot hash {path} on {self.where.host_port}: {value}",
                        permanent="permission denied" in value.lower(),
                    )
                )
        return hashes

    def free_bytes(self, path: str, caps: Capabilities | None = None) -> int | None:
        """Bytes free for the account under ``path``, by statvfs over SFTP or ``df`` over exec."""
        try:
            # paramiko has no statvfs: send OpenSSH's extension request through its request call.
            request = cast(_RawRequests, self.sftp)._request
            _, reply = request(CMD_EXTENDED, "statvfs@openssh.com", path)
            if reply is not None:
                # f_bsize, f_frsize, f_blocks, f_bfree, f_bavail... as uint64s.
                _, frsize, _, _, bavail = struct.unpack(">5Q", reply.get_bytes(40))
                return frsize * bavail
        except (OSError, paramiko.SSHException, struct.error):
            pass  # the server lacks the extension: try df
        if caps is not None and "df" in caps.tools:
            try:
                status, stdout, _ = self.run(f"df -Pk {remote_argument(path)}")
            except (paramiko.SSHException, OSError, EOFError):
                return None
            rows = stdout.splitlines()
            if status == 0 and len(rows) >= 2 and len(rows[1].split()) >= 4:
                return int(rows[1].split()[3]) * 1024
        return None

    def exists(self, path: str) -> paramiko.SFTPAttributes | None:
        """The attributes of ``path``, or None when there is nothing there."""
        try:
            return self.sftp.stat(path)
        except FileNotFoundError:
            return None
        except (OSError, paramiko.SSHException, EOFError) as error:
            raise sftp_error(f"cannot look at {path}", error, self.where) from error

    def require_directory(self, base: str) -> None:
        """Fail permanently when the endpoint's base path is missing or not a directory."""
        attributes = self.exists(base)
        if attributes is None:
            raise AdapterError(
                f"the base path {base} does not exist on {self.where.host_port}", permanent=True
            )
        if not stat.S_ISDIR(attributes.st_mode or 0):
            raise AdapterError(
                f"the base path {base} on {self.where.host_port} is not a directory",
                permanent=True,
            )

    def refuse_link(self, path: str) -> bool:
        """Fail permanently when ``path`` is a symbolic link; whether anything is there.

        Checked by ``lstat`` just before the write: a link planted in between is not seen.
        """
        try:
            attributes = self.sftp.lstat(path)
        except FileNotFoundError:
            return False
        except (OSError, paramiko.SSHException, EOFError) as error:
            raise sftp_error(f"cannot look at {path}", error, self.where) from error
        if stat.S_ISLNK(attributes.st_mode or 0):
            raise AdapterError(
                f"{path} on {self.where.host_port} is a symbolic link: links at the destination "
                "are never followed",
                permanent=True,
            )
        return True

    def make_directories(self, base: str, parts: tuple[str, ...]) -> None:
        """Create the folders ``parts`` under ``base`` (which must exist) as needed, no link."""
        path = base
        for part in parts:
            path = posixpath.join(path, part)
            if self.refuse_link(path):
                continue
            try:
                self.sftp.mkdir(path)
            except (OSError, paramiko.SSHException, EOFError) as error:
                if self.exists(path) is None:  # not another worker's mkdir: a real refusal
                    what = f"cannot create the directory {path}"
                    raise sftp_error(what, error, self.where) from error


def preflight(login: Login, where: Where) -> paramiko.PKey | None:
    """Check the files a login needs on this machine; the private key, if the login uses one.

    ssh would only say "Permission denied" for a key file it cannot read: say why, first.
    """
    known_hosts = Path(where.known_hosts)
    if not known_hosts.is_file():
        raise AdapterError(
            f"known_hosts {known_hosts} does not exist: add the key of {where.host_port} to it "
            f"(ssh-keyscan -p {where.port} {where.host}) after checking its fingerprint",
            permanent=True,
        )
    return load_key(login.key_file) if login.key_file is not None else None


@contextmanager
def open_session(host: str, port: int, login: Login, where: Where) -> Iterator[HostSession]:
    """A logged-in session with the host, closed on the way out."""
    pkey = preflight(login, where)
    known_hosts = Path(where.known_hosts)
    client = paramiko.SSHClient()
    try:
        try:
            client.load_host_keys(str(known_hosts))
        except OSError as error:
            raise AdapterError(
                f"cannot read known_hosts {known_hosts}: {error.strerror}", permanent=True
            ) from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                host,
                port,
                username=login.username,
                password=login.password if pkey is None else None,
                pkey=pkey,
                look_for_keys=False,
                allow_agent=False,
                timeout=TIMEOUT,
                banner_timeout=TIMEOUT,
                auth_timeout=TIMEOUT,
                channel_timeout=TIMEOUT,
            )
        except (OSError, paramiko.SSHException, EOFError) as error:
            raise connect_error(error, where, login.username, pkey is None) from None
        session = HostSession(client, where)
        try:
            yield session
        finally:
            session.close()
    finally:
        client.close()
