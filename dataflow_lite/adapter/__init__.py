"""The transfer adapter interface, and how adapters are found.

An adapter moves files from the server's staging area to one kind of destination (a local
directory, an SSH host, a Globus collection). Adapters are plugins: each is a class registered in
the entry-point group ``dataflow_lite.adapters`` under its name, the local-copy adapter that ships
with dataflow-lite included. The core knows them only through this interface::

    [project.entry-points."dataflow_lite.adapters"]
    local = "dataflow_lite_local:LocalAdapter"

Every path an adapter is given is relative to the endpoint's root and has already been checked
by :mod:`dataflow_lite.layout`; an adapter never sees a path a user typed. Each is
``<instrument>/<date>/<dataset folder>/...``: the first ``DATASET_FOLDER_DEPTH`` components name
the dataset's own folder, which an adapter creates afresh rather than adopt.

The interface is in :mod:`.base`, the values it exchanges in :mod:`.values`, file-system helpers
adapters share in :mod:`.files`, and discovery in :mod:`.registry`; everything is importable
from here.
"""

from __future__ import annotations

from dataflow_lite.adapter.base import (
    TransferAdapter,
    outcome_of,
)
from dataflow_lite.adapter.files import (
    abandoned,
    being_written,
    fsync_directory,
    lock_for_writing,
)
from dataflow_lite.adapter.registry import (
    ENTRY_POINT_GROUP,
    Adapters,
    adapter_key_files,
    adapter_settings,
    discover_adapters,
)
from dataflow_lite.adapter.values import (
    ACTIVATION_FAILED,
    ALREADY_ACTIVATED,
    AUTO_ACTIVATED,
    DATASET_FOLDER_DEPTH,
    DONE,
    FAILED,
    PERMANENT_ERRNOS,
    QUEUED,
    RUNNING,
    VERIFYING,
    Activation,
    AdapterContext,
    AdapterError,
    Cancelled,
    Check,
    Credentials,
    DestinationExists,
    FoundFolder,
    Option,
    TransferJob,
    TransferStatus,
)

__all__ = [
    "ACTIVATION_FAILED",
    "ALREADY_ACTIVATED",
    "AUTO_ACTIVATED",
    "Activation",
    "AdapterContext",
    "AdapterError",
    "Adapters",
    "Cancelled",
    "Check",
    "Credentials",
    "DATASET_FOLDER_DEPTH",
    "DONE",
    "DestinationExists",
    "ENTRY_POINT_GROUP",
    "FAILED",
    "FoundFolder",
    "Option",
    "PERMANENT_ERRNOS",
    "QUEUED",
    "RUNNING",
    "TransferAdapter",
    "TransferJob",
    "TransferStatus",
    "VERIFYING",
    "abandoned",
    "adapter_key_files",
    "adapter_settings",
    "being_written",
    "discover_adapters",
    "fsync_directory",
    "lock_for_writing",
    "outcome_of",
]
