"""``python -m dataflow_lite``: the same as the ``dataflow-lite`` command."""

from .cli import main

main()
