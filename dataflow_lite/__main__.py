"""``python -m dataflow_lite``: the same as the ``dataflow-lite`` command."""

from dataflow_lite.cli import main

main()
