"""The ``dataflow-lite`` command, one module per group of commands."""

from dataflow_lite.cli import endpoints  # noqa: F401  (registers its commands on main)
from dataflow_lite.cli.base import main
from dataflow_lite.cli.db import db_group

main.add_command(db_group)

__all__ = ["main"]
