"""The ``dataflow-lite`` command, one module per group of commands.

``base`` holds the group itself; importing each command module registers its commands on it.
Command modules import ``base`` (and ``serve`` the schema upgrade of ``db``), never in a circle.
"""

from dataflow_lite.cli import audit, catalog, db, endpoints, instruments, serve, users  # noqa: F401
from dataflow_lite.cli.base import main

__all__ = ["main"]
