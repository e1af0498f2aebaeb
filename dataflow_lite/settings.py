"""The one table of settings, and how they are read.

Each setting is looked up, later sources winning: its default here, then ``config.toml`` in the
instance folder, then an environment variable ``DATAFLOW_LITE_<NAME>``, then the test config
passed to ``create_app``. Unknown names and wrong types stop start-up with a clear message.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "DATAFLOW_LITE_"


@dataclass(frozen=True)
class Setting:
    """One setting: its name, type, default value and help text."""

    name: str
    type: type
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database",
        str,
        "dataflow.sqlite3",
        "The catalog: an SQLite file relative to the instance folder, or a PostgreSQL URL "
        "(postgresql+psycopg://user:password@host:5432/name).",
    ),
    Setting(
        "staging_dir",
        str,
        "staging",
        "Where uploads are written while they arrive, relative to the instance folder. Keep it "
        "on the same filesystem as local destinations so that files are moved, not copied.",
    ),
    Setting(
        "keys_dir",
        str,
        "",
        "Folder of the instance keys (secret_key, password.key), relative to the instance "
        "folder; empty: the instance folder. Hosts sharing one database need the same two "
        "files: copy them, or point this at one shared folder; a host with other keys is "
        "refused at start.",
    ),
    Setting(
        "host_name",
        str,
        "",
        "This server's name among hosts sharing one database (empty: the machine's name); "
        "a file's transfer runs on the host that staged it.",
    ),
    Setting(
        "host_lost_seconds",
        int,
        300,
        "A host whose transfer worker has not checked in (it does every minute) for this long "
        "is lost: the transfers waiting for it say so, and its name may be taken by another "
        "instance folder.",
    ),
    Setting(
        "destination_dir",
        str,
        "dataflow",
        "Root of the default local destination endpoint that `init` registers, relative to "
        "the instance folder.",
    ),
    Setting(
        "max_upload_bytes",
        int,
        1 << 40,
        "Largest request body accepted, in bytes (1 TiB by default); larger ones get 413.",
    ),
    Setting(
        "resumable_upload_expiry_seconds",
        int,
        24 * 3600,
        "How long an unfinished resumable (tus) upload waits for its next bytes, in seconds "
        "(24 hours by default); then it expires and the transfer worker removes its bytes.",
    ),
    Setting(
        "max_form_field_bytes",
        int,
        64 * 1024,
        "Largest non-file field of a multipart upload, in bytes.",
    ),
    Setting(
        "max_upload_parts",
        int,
        16,
        "Most parts (form fields and the file) one multipart upload may have; more get 413.",
    ),
    Setting(
        "max_part_header_bytes",
        int,
        8 * 1024,
        "Largest headers of one part of a multipart upload, in bytes; larger ones get 413.",
    ),
    Setting(
        "bundle_max_files",
        int,
        1000,
        "Most files one bundle (`dataset-file-bundle`: several small files in one request) "
        "may carry; more get 413.",
    ),
    Setting(
        "bundle_max_bytes",
        int,
        256 << 20,
        "Most bytes the files of one bundle may add up to (256 MiB by default); more get 413.",
    ),
    Setting(
        "max_json_bytes",
        int,
        4 << 20,
        "Largest JSON request body of the API, in bytes (4 MiB by default); larger ones get 413.",
    ),
    Setting(
        "max_json_depth",
        int,
        32,
        "Deepest nesting of arrays and objects in a JSON request body; deeper ones get 400.",
    ),
    Setting(
        "max_json_integer_digits",
        int,
        100,
        "Most digits of one integer in a JSON request body; longer ones get 400.",
    ),
    Setting(
        "max_metadata_values",
        int,
        1000,
        "Most metadata values one dataset may have; more get 413.",
    ),
    Setting(
        "max_metadata_value_bytes",
        int,
        64 * 1024,
        "Largest metadata value, in bytes of its JSON text; larger ones get 413.",
    ),
    Setting(
        "api_key_days",
        int,
        0,
        "Days until a new API key expires when none is given; 0 means keys do not expire.",
    ),
    Setting(
        "per_page",
        int,
        20,
        "Search results per page when the request does not say.",
    ),
    Setting(
        "max_per_page",
        int,
        100,
        "Most search results a request may ask for in one page.",
    ),
    Setting(
        "transfer_workers",
        int,
        4,
        "Transfers the queue runs at once (threads of the worker that `serve` starts).",
    ),
    Setting(
        "transfer_max_attempts",
        int,
        10,
        "Attempts before a transfer that keeps failing for transient reasons is marked failed.",
    ),
    Setting(
        "transfer_retry_seconds",
        int,
        5,
        "Wait before the first retry of a transfer; it doubles with each attempt, up to an hour.",
    ),
    Setting(
        "transfer_lease_seconds",
        int,
        120,
        "How long a worker's claim on a transfer lasts unless renewed; a transfer whose worker "
        "died is resumed after it.",
    ),
    Setting(
        "transfer_poll_seconds",
        int,
        10,
        "How often the queue asks an adapter about a transfer still moving (a Globus task).",
    ),
    Setting(
        "transfer_progress_seconds",
        int,
        2,
        "How often a running transfer stores its bytes moved and looks whether it was "
        "cancelled (a cancelled copy stops within about this long).",
    ),
    Setting(
        "transfer_batch_files",
        int,
        500,
        "Most files of one dataset that an adapter which batches (sftp: one rsync; Globus: one "
        "task) is handed at once.",
    ),
    Setting(
        "transfer_batch_bytes",
        int,
        1 << 30,
        "Most bytes of one batch; a larger file goes alone.",
    ),
    Setting(
        "metadata_settle_seconds",
        int,
        5,
        "How long a dataset's files must stop finishing before its metadata.json is rewritten "
        "(once for a burst of files, not once per file).",
    ),
    Setting(
        "queue_immediate",
        bool,
        False,
        "Run transfers inside the request that queued them, with no worker (for tests).",
    ),
    Setting(
        "live_check_max_age_seconds",
        int,
        60,
        "How long an endpoint's live check (activation state, the admin page's checks) is "
        "reused; an older one is shown with its age while it is asked again in the background.",
    ),
    Setting(
        "live_check_timeout_seconds",
        int,
        5,
        "How long a page or the API waits for an endpoint's first live check before answering "
        '"no answer yet" (the check goes on in the background).',
    ),
    Setting(
        "trusted_proxies",
        int,
        0,
        "How many reverse proxies in front of the server to trust: the client's address and "
        "scheme are read from that many X-Forwarded-For and X-Forwarded-Proto entries. 0 (the "
        "default) trusts none and uses the connection's own address.",
    ),
    Setting(
        "secure_cookies",
        bool,
        False,
        "Mark the session cookie Secure (sent over HTTPS only); set it when the server is "
        "reached through TLS. With trusted_proxies, a request the proxy says came by https "
        "gets a Secure cookie anyway.",
    ),
    Setting(
        "busy_timeout_ms",
        int,
        30_000,
        "How long a database connection waits for another writer, in milliseconds.",
    ),
)


class ConfigError(Exception):
    """The configuration names an unknown setting or gives one a value of the wrong type."""


def _check(name: str, value: Any, source: str, known: Mapping[str, Setting]) -> Any:
    setting = known.get(name)
    if setting is None:
        raise ConfigError(
            f"unknown setting {name!r} in {source}; known settings: {', '.join(sorted(known))}"
        )
    if isinstance(value, str) and setting.type is not str:
        # Environment variables are text: read numbers and true/false from them.
        if setting.type is bool and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if setting.type is int:
            try:
                return int(value)
            except ValueError:
                pass
    # bool is a subclass of int: true/false is not a size or a count.
    if not isinstance(value, setting.type) or (setting.type is int and isinstance(value, bool)):
        raise ConfigError(
            f"setting {name!r} in {source} must be of type {setting.type.__name__}, "
            f"not {type(value).__name__} ({value!r})"
        )
    return value


def load_settings(
    instance_path: Path,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    extra: tuple[Setting, ...] = (),
) -> dict[str, Any]:
    """Return every setting's value, each checked, from all sources in order of precedence.

    ``extra`` adds settings declared elsewhere (the installed adapters' own).
    """
    environ = os.environ if environ is None else environ
    known = {setting.name: setting for setting in SETTINGS + extra}
    values = {name: setting.default for name, setting in known.items()}
    config_file = instance_path / "config.toml"
    if config_file.exists():
        try:
            from_file = tomllib.loads(config_file.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_file} is not valid TOML: {error}") from error
        for name, value in from_file.items():
            values[name] = _check(name, value, str(config_file), known)
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "INSTANCE":
            name = key[len(ENV_PREFIX) :].lower()
            values[name] = _check(name, value, f"environment variable {key}", known)
    for name, value in (overrides or {}).items():
        values[name] = _check(name, value, "the test config", known)
    return values
