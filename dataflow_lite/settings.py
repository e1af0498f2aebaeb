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
        "SQLite database file of the catalog, relative to the instance folder.",
    ),
    Setting(
        "staging_dir",
        str,
        "staging",
        "Where uploads are written while they arrive, relative to the instance folder. Keep it "
        "on the same filesystem as local destinations so that files are moved, not copied.",
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
        "max_form_field_bytes",
        int,
        64 * 1024,
        "Largest non-file field of a multipart upload, in bytes.",
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
        "busy_timeout_ms",
        int,
        30_000,
        "How long a database connection waits for another writer, in milliseconds.",
    ),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}


class ConfigError(Exception):
    """The configuration names an unknown setting or gives one a value of the wrong type."""


def _check(name: str, value: Any, source: str) -> Any:
    setting = BY_NAME.get(name)
    if setting is None:
        raise ConfigError(
            f"unknown setting {name!r} in {source}; known settings: {', '.join(sorted(BY_NAME))}"
        )
    if setting.type is int and isinstance(value, str):
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
) -> dict[str, Any]:
    """Return every setting's value, each checked, from all sources in order of precedence."""
    environ = os.environ if environ is None else environ
    values = {setting.name: setting.default for setting in SETTINGS}
    config_file = instance_path / "config.toml"
    if config_file.exists():
        try:
            from_file = tomllib.loads(config_file.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_file} is not valid TOML: {error}") from error
        for name, value in from_file.items():
            values[name] = _check(name, value, str(config_file))
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "INSTANCE":
            name = key[len(ENV_PREFIX) :].lower()
            values[name] = _check(name, value, f"environment variable {key}")
    for name, value in (overrides or {}).items():
        values[name] = _check(name, value, "the test config")
    return values
