"""The catalog's Alembic migrations: ``env.py``, and one file per revision in ``versions/``.

:mod:`dataflow_lite.store.schema` configures Alembic in code, so no ``alembic.ini`` is needed.
A new revision is a new file in ``versions/`` whose ``down_revision`` is the current head;
``alembic.command.revision(schema.alembic_config(), "what changes")`` writes its skeleton.
"""
