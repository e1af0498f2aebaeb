"""The one place that builds what the services run on: settings, database, adapters, queue.

The web app (``create_app``), the CLI and the transfer worker all start here, so each face gets
the same catalog, the same adapters and the same queue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from dataflow_lite.adapter import (
    AdapterContext,
    Adapters,
    adapter_key_files,
    adapter_settings,
    discover_adapters,
)
from dataflow_lite.live_checks import LiveChecks
from dataflow_lite.settings import ENV_PREFIX, load_settings
from dataflow_lite.store import db, schema
from dataflow_lite.store.instance_keys import (
    PasswordCipher,
    check_fingerprint,
    instance_secret_key,
    keys_folder,
)
from dataflow_lite.transfers.claims import host_name
from dataflow_lite.transfers.queue import TransferQueue


@dataclass
class Runtime:
    """What every service function is given first: one instance's catalog and machinery."""

    instance: Path
    settings: dict[str, Any]
    engine: Engine
    adapters: Adapters
    queue: TransferQueue
    cipher: PasswordCipher
    #: Signs API keys (itsdangerous) and the web session cookie.
    secret_key: bytes
    #: The endpoints' live checks, bounded in time and remembered (this process's).
    live: LiveChecks


def instance_path_from_environment() -> Path:
    """The instance folder: ``$DATAFLOW_LITE_INSTANCE``, else ``./instance``."""
    return Path(os.environ.get(ENV_PREFIX + "INSTANCE") or "instance").resolve()


def build(instance: Path | None = None, overrides: dict[str, Any] | None = None) -> Runtime:
    """Open the instance folder (created if missing) and everything the services need.

    ``overrides`` sets settings by name (see :mod:`dataflow_lite.settings`).
    """
    instance = (instance or instance_path_from_environment()).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    adapter_classes = discover_adapters()
    settings = load_settings(instance, overrides=overrides, extra=adapter_settings(adapter_classes))
    staging = instance / settings["staging_dir"]
    staging.mkdir(parents=True, exist_ok=True)
    keys = keys_folder(instance, settings["keys_dir"])
    cipher = PasswordCipher(keys)
    adapters = Adapters(adapter_classes, AdapterContext(instance, staging, settings, keys))
    database = db.Database.from_setting(instance, settings["database"])
    engine = db.make_engine(database, settings["busy_timeout_ms"])
    # A new database gets its tables; an older one stops start-up naming 'db upgrade'.
    schema.prepare(engine, database)
    # Hosts sharing a catalog must share its keys: a host with others stops here, naming why.
    check_fingerprint(engine, keys, host_name(settings), adapter_key_files(adapter_classes))
    queue = TransferQueue(engine, adapters, cipher, instance / "queue.sqlite3", settings)
    return Runtime(
        instance=instance,
        settings=settings,
        engine=engine,
        adapters=adapters,
        queue=queue,
        cipher=cipher,
        secret_key=instance_secret_key(keys),
        live=LiveChecks(
            settings["live_check_max_age_seconds"], settings["live_check_timeout_seconds"]
        ),
    )
